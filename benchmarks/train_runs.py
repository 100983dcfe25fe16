"""``thoughtmdp train`` runs for the benchmarks, each done once and reused only if unchanged.

A finished run folder (it has ``summary.json``) is reused, so an interrupted benchmark resumes
where it stopped; the settings it ran with are kept beside it (``benchmark_args.json``), and a
folder that ran with other settings is an error rather than a silent mix of budgets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from report_files import RESULTS

from thoughtmdp.runs.files import SUMMARY_FILE

ARGS_FILE = "benchmark_args.json"


def add_run_arguments(parser: argparse.ArgumentParser, runs: str) -> None:
    """``--set``, ``--out`` and ``--runs``, shared by the benchmarks that train."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a `thoughtmdp train` setting for every run",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--runs", type=Path, default=Path(runs), help="run folders")


def train_once(run_dir: Path, settings: list[str], implicit: Sequence[str] = ()) -> Path:
    """Run ``thoughtmdp train run_dir=RUN_DIR SETTINGS...`` unless it already ran.

    Args:
        run_dir: The run folder.
        settings: The run's settings.
        implicit: Settings among ``settings`` that restate what the library did before they
            existed: a run recorded without them ran under them, so it still matches.

    Raises:
        RuntimeError: If the run failed (its log is named), or if ``run_dir`` holds a finished
            run with other settings.
    """
    recorded = run_dir / ARGS_FILE
    if (run_dir / SUMMARY_FILE).exists():
        before = json.loads(recorded.read_text()) if recorded.exists() else None
        if before not in (settings, [s for s in settings if s not in implicit]):
            raise RuntimeError(
                f"{run_dir} holds a run with other settings ({before}); remove it or pass "
                "another --runs folder"
            )
        return run_dir
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = run_dir.parent / f"{run_dir.name}.log"
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "thoughtmdp.cli", "train", f"run_dir={run_dir}", *settings],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "120"},
        )
    if done.returncode:
        raise RuntimeError(f"thoughtmdp train failed for {run_dir}; see {log}")
    recorded.write_text(json.dumps(settings) + "\n")
    return run_dir
