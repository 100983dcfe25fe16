"""Learning: do resets beat GRPO where credit assignment is the bottleneck?

The task is HardStepChain (``hard_step_chain``): 8-step chains of easy additions and
subtractions with one multiplication, the hard step, at a position we set. The policy is a
tiny model warm-started on it (``credit/runs.py`` holds the recipe). Every method trains with
``thoughtmdp train`` for the same learner steps of 8 rollouts a prompt: GRPO (8 from the
prompt), RRPO, SRPO and oracle resets (``1x4``), SRPO at ``2x4`` and ``1x8``, and resets at
the least confident step. Each run's adapter versions are evaluated on 1,000 held-out
problems: sampled pass@1 (4 samples a problem at the training temperature, the same draws for
every run) with its standard error, and greedy. With ``--focus``, the main comparison's first
and last versions also get the hard step's pass rate from a correct prefix
(``credit/focus.py``): the credit a run learnt where resets aim it. Studies, in the order
compute goes to them:

- ``main``: GRPO, RRPO, SRPO, oracle at the late hard step, 5 seeds;
- ``lr``: GRPO and SRPO at five learning rates, 2 seeds (the best rate of each is then used);
- ``knob``: GRPO, oracle, SRPO at three positions of the hard step, 3 seeds;
- ``shapes``: SRPO 2x4 and 1x8, least-confident resets, 3 seeds.

Runs are reused when they finished with the same settings, so an interrupted benchmark
resumes; the report is rewritten after every run. ``--quick`` is a minutes-long smoke run of
the main comparison (2 steps of 2 prompts, 16 problems); ``--studies`` and ``--methods`` pick
parts. Writes ``learning.{json,md}``, ``learning.png`` (curves against rollouts,
tokens and seconds, mean and 95 % band over seeds) and ``learning_knob.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any

from credit.focus import FOCUS_FILE, focus_accuracy
from credit.page import markdown
from credit.probe import probe
from credit.report import goals, knob_rows, lr_rows, method_rows, plot_curves, plot_knob
from credit.runs import FULL, METHODS, QUICK, STUDIES, Budget, Run, study
from credit.stats import mean_curve, read_run
from report_files import write_report
from train_runs import add_run_arguments, train_once

from thoughtmdp.runs.files import SUMMARY_FILE

PROBE_PROBLEMS = {"full": 400, "quick": 8}
FOCUS_SIZE = {"full": (500, 2), "quick": (8, 2)}
"""Problems and samples a problem of the focus measurement."""


class Benchmark:
    """The runs done so far, read once each, and the report they make."""

    def __init__(self, args: argparse.Namespace, budget: Budget) -> None:
        self.args, self.budget = args, budget
        self.records: dict[str, dict[str, Any]] = {}
        self.tokenizer: Any = None

    def train(self, run: Run) -> dict[str, Any]:
        """Train ``run`` (unless it finished before) and read it."""
        if run.key not in self.records:
            folder = train_once(
                run.folder(self.args.runs),
                run.settings(self.budget) + self.args.set,
                implicit=run.first_conditions(),
            )
            self.records[run.key] = read_run(folder, self._tokenizer(folder))
        return self.records[run.key]

    def add_focus(self, run: Run) -> None:
        """Add the hard step's pass rate from a correct prefix, first and last version."""
        record = self.records[run.key]
        problems, samples = FOCUS_SIZE["quick" if self.args.quick else "full"]
        folder = Path(record["run_dir"])
        start = self.args.runs / f"h{run.hard_step}" / FOCUS_FILE  # one starting policy
        record["focus"] = {
            "start": focus_accuracy(folder, 0, problems, samples, out=start),
            "final": focus_accuracy(folder, None, problems, samples),
        }

    def _tokenizer(self, folder: Path) -> Any:
        if self.tokenizer is None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.model(folder))
        return self.tokenizer

    @staticmethod
    def model(folder: Path) -> str:
        """The base model a run trained."""
        import yaml

        config = yaml.safe_load((folder / "config.yaml").read_text())
        return str(config["learner"]["model"])

    def best_lrs(self) -> dict[str, float]:
        """The best learning rate of GRPO and of SRPO (shared by every reset method)."""
        runs = study("lr", self.budget, {})
        if not all(r.key in self.records for r in runs):
            return {}
        best = {}
        for method in ("grpo", "srpo"):
            mine = [r for r in runs if r.method == method]
            by_lr = {r.lr: [] for r in mine}
            for r in mine:
                by_lr[r.lr].append(self.records[r.key]["curve"][-1]["sampled"])
            best[method] = max(by_lr, key=lambda lr: sum(by_lr[lr]) / len(by_lr[lr]))
        return {"grpo": best["grpo"], **dict.fromkeys(METHODS_WITH_RESETS, best["srpo"])}

    def grouped(self, name: str) -> dict[str, list[dict[str, Any]]]:
        """A study's finished runs by method (and learning rate, for ``lr``)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for run in study(name, self.budget, self.best_lrs()):
            if run.key in self.records:
                label = f"{run.method}@{run.lr:g}" if name == "lr" else run.method
                if name == "knob":
                    label = f"{run.hard_step}/{run.method}"
                out.setdefault(label, []).append(self.records[run.key])
        return out


METHODS_WITH_RESETS = ("srpo", "rrpo", "oracle", "srpo_2x4", "srpo_1x8", "least_confident")


def report(bench: Benchmark, probes: dict[int, dict[str, Any]], command: str) -> dict[str, Any]:
    main_runs = bench.grouped("main")
    knobs: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for label, records in bench.grouped("knob").items():
        knob, method = label.split("/")
        knobs.setdefault(int(knob), {})[method] = records
    shapes = {**{k: v for k, v in main_runs.items() if k == "grpo"}, **bench.grouped("shapes")}
    out = {
        "command": command,
        "machine": _machine(),
        "budget": vars(bench.budget),
        "minutes": sum(r["minutes"] for r in bench.records.values()),
        "learning_rates": bench.best_lrs(),
        "probes": {str(k): v for k, v in probes.items()},
        "main": method_rows(main_runs) if main_runs else {},
        "main_curves": {m: mean_curve(r) for m, r in main_runs.items()},
        "goals": goals(main_runs),
        "lr": lr_rows(bench.grouped("lr")),
        "knob": knob_rows(knobs, probes),
        "shapes": method_rows(shapes) if shapes else {},
        "shape_goals": goals(shapes),
        "runs": dict(sorted(bench.records.items())),
    }
    write_report(bench.args.out, "learning", out, markdown(out))
    if main_runs:
        plot_curves(main_runs, bench.args.out / "learning.png")
    if out["knob"]:
        plot_knob(out["knob"], bench.args.out / "learning_knob.png")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a minutes-long smoke run")
    parser.add_argument("--studies", nargs="+", choices=STUDIES, help="default: all (quick: main)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="only these methods")
    parser.add_argument(
        "--report-only", action="store_true", help="report the finished runs; train nothing"
    )
    parser.add_argument(
        "--focus",
        action="store_true",
        help="also measure the hard step from a correct prefix (main comparison)",
    )
    add_run_arguments(parser, "runs/learning")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    args.studies = args.studies or (["main"] if args.quick else list(STUDIES))
    bench = Benchmark(args, budget)
    command = " ".join(["python", "benchmarks/learning.py", *(argv or sys.argv[1:])])
    probes: dict[int, dict[str, Any]] = {}
    result: dict[str, Any] = {}
    for name in args.studies:
        for run in study(name, budget, bench.best_lrs()):
            if args.methods and run.method not in args.methods:
                continue
            if args.report_only and not (run.folder(args.runs) / SUMMARY_FILE).exists():
                continue
            record = bench.train(run)
            if args.focus and name == "main":
                bench.add_focus(run)
            if run.hard_step not in probes:
                probes[run.hard_step] = measure(bench, run, Path(record["run_dir"]))
            result = report(bench, probes, command)
    return result


def measure(bench: Benchmark, run: Run, folder: Path) -> dict[str, Any]:
    """The starting policy at ``run``'s knob value (cached beside the runs)."""
    import yaml

    size = PROBE_PROBLEMS["quick" if bench.args.quick else "full"]
    config = yaml.safe_load((folder / "config.yaml").read_text())
    model, options = Path(config["learner"]["model"]), config["actor"]["task_options"]
    return probe(model, options, size, bench.args.runs / f"h{run.hard_step}")


def _machine() -> str:
    import numpy as np
    import torch

    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {np.__version__}"
    )


if __name__ == "__main__":
    main()
