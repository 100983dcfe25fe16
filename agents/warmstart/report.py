"""The warm-start report: a freshly built embedded policy measured on held-out problems."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from thoughtmdp.agents.backends.transformers import TransformersBackend
from thoughtmdp.agents.warmstart.data import recipe_task
from thoughtmdp.evaluation.audit import AuditResult, AuditSettings, audit_localization
from thoughtmdp.evaluation.audit_report import first_error_summary, localization_summary
from thoughtmdp.evaluation.engine import EvalEngine
from thoughtmdp.evaluation.heldout import HeldoutResult, heldout_pass_rate
from thoughtmdp.settings.evaluation import EvalSettings
from thoughtmdp.settings.warmstart import WarmStartRecipe

THOUGHT_TOKENS = 32  # far above an ArithChain step
LOCALIZER_TOKENS_PER_STEP = 16  # a localiser answer redoes up to every step


def warm_start_report(folder: Path, recipe: WarmStartRecipe) -> dict[str, Any]:
    """Measure a built embedded policy on held-out (test) problems.

    Reports the greedy pass rate and well-formed rate; the exact-match rate of its
    self-localisation on its own failed chains (sampled at temperature 1) against the step
    oracle, beside the uniform-random baseline ``mean(1 / H_s)`` of the same chains; and the
    sampled pass rate with where those chains first go wrong (for ``hard_step_chain``, how
    often at the hard step).

    Args:
        folder: The model folder.
        recipe: Its recipe.

    Returns:
        The report as plain data: ``heldout``, ``localization`` and ``first_errors``.
    """
    task = recipe_task(recipe)
    backend = TransformersBackend(folder, max_batch_size=128)
    problems = task.problems("test")[: recipe.eval_problems]
    localizer_tokens = max(128, LOCALIZER_TOKENS_PER_STEP * recipe.num_steps)
    audit = AuditSettings(suffixes=0, localizer_max_tokens=localizer_tokens)
    greedy_settings = EvalSettings(max_tokens=THOUGHT_TOKENS, max_thoughts=2 * recipe.num_steps)

    async def measure() -> tuple[HeldoutResult, AuditResult]:
        greedy = EvalEngine(backend, task, greedy_settings, split="test")
        sampled_settings = replace(greedy_settings, temperature=1.0)
        sampled = EvalEngine(backend, task, sampled_settings, split="test")
        heldout = await heldout_pass_rate(greedy, problems)
        return heldout, await audit_localization(sampled, problems, audit)

    try:
        heldout, localization = asyncio.run(measure())
    finally:
        backend.close()
    hard_steps = {p.id: p.payload.get("hard_step") for p in problems}
    return {
        "heldout": heldout.summary(),
        "localization": localization_summary(localization.records),
        "first_errors": first_error_summary(localization, hard_steps),
    }
