"""The warm-start report: a freshly built embedded policy measured on held-out problems."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from thoughtmdp.agents.backends.transformers import TransformersBackend
from thoughtmdp.agents.warmstart.data import recipe_task
from thoughtmdp.evaluation.audit import AuditResult, AuditSettings, audit_localization
from thoughtmdp.evaluation.audit_report import localization_summary
from thoughtmdp.evaluation.engine import EvalEngine
from thoughtmdp.evaluation.heldout import HeldoutResult, heldout_pass_rate
from thoughtmdp.settings.evaluation import EvalSettings
from thoughtmdp.settings.warmstart import WarmStartRecipe

GREEDY = EvalSettings(max_tokens=32, max_thoughts=8)
"""Greedy chains: 32 tokens a thought is far above an ArithChain step."""
SAMPLED = replace(GREEDY, temperature=1.0)
"""The policy's own failed chains, for the localisation audit."""
LOCALIZER_TOKENS = 128  # a localiser answer redoes up to every step


def warm_start_report(folder: Path, recipe: WarmStartRecipe) -> dict[str, Any]:
    """Measure a built embedded policy on held-out (test) problems.

    Reports the greedy pass rate and well-formed rate, and the exact-match rate of its
    self-localisation on its own failed chains (sampled at temperature 1) against the step
    oracle, beside the uniform-random baseline ``mean(1 / H_s)`` of the same chains.

    Args:
        folder: The model folder.
        recipe: Its recipe.

    Returns:
        The report as plain data: ``heldout`` and ``localization``.
    """
    task = recipe_task(recipe)
    backend = TransformersBackend(folder, max_batch_size=128)
    problems = task.problems("test")[: recipe.eval_problems]
    audit = AuditSettings(suffixes=0, localizer_max_tokens=LOCALIZER_TOKENS)

    async def measure() -> tuple[HeldoutResult, AuditResult]:
        greedy = EvalEngine(backend, task, GREEDY, split="test")
        sampled = EvalEngine(backend, task, SAMPLED, split="test")
        heldout = await heldout_pass_rate(greedy, problems)
        return heldout, await audit_localization(sampled, problems, audit)

    try:
        heldout, localization = asyncio.run(measure())
    finally:
        backend.close()
    return {
        "heldout": heldout.summary(),
        "localization": localization_summary(localization.records),
    }
