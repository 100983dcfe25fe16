"""What the starting policy does at each knob value, before any training.

For the warm start and one position of the hard step: the share of sampled chains that reach
the hard step with no mistake before it (``p``), where failed chains first go wrong, how often
the policy localises its own first mistake (against uniform), and how often suffixes
resampled from a clean or an erroneous prefix pass. These are the facts that decide whether
resets can help, measured the way training samples (temperature 1).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

PROBE_FILE = "probe.json"
THOUGHT_TOKENS = 24


def probe(model: Path, task_options: dict[str, Any], problems: int, out: Path) -> dict[str, Any]:
    """Measure (or read back) the starting policy at one knob value; cached in ``out``."""
    path = out / PROBE_FILE
    if path.exists():
        return json.loads(path.read_text())
    from thoughtmdp.agents.backends.transformers import TransformersBackend
    from thoughtmdp.evaluation.audit import AuditSettings, audit_localization
    from thoughtmdp.evaluation.audit_report import (
        audit_summary,
        first_error_summary,
        localization_summary,
    )
    from thoughtmdp.evaluation.engine import EvalEngine
    from thoughtmdp.mdp.task import make_task
    from thoughtmdp.settings.evaluation import EvalSettings

    task = make_task("hard_step_chain", **task_options)
    steps = task_options["num_steps"]
    settings = EvalSettings(max_tokens=THOUGHT_TOKENS, max_thoughts=12, temperature=1.0)
    chosen = task.problems("test")[:problems]
    backend = TransformersBackend(model, max_batch_size=128)

    async def measure() -> Any:
        engine = EvalEngine(backend, task, settings, split="test")
        return await audit_localization(
            engine, chosen, AuditSettings(suffixes=4, localizer_max_tokens=16 * steps)
        )

    try:
        result = asyncio.run(measure())
    finally:
        backend.close()
    summary = audit_summary(result)
    report = {
        **first_error_summary(result, {p.id: p.payload["hard_step"] for p in chosen}),
        "exact_match_rate": summary["exact_match_rate"],
        "uniform_baseline": localization_summary(result.records)["uniform_baseline"],
        "clean_prefix_rate": summary["clean_prefix_rate"],
        "correction": summary["correction"],
    }
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report
