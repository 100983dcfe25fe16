"""How often a policy gets the hard step right from a correct prefix: the credit it learnt there.

Sampled pass@1 from the prompt mixes two things a run can learn: the easy steps (any method
sharpens them) and the hard step (what resets aim their credit at). This isolates the
second. For each held-out problem the reference solver's correct thoughts up to the hard
step form the prefix, and the policy samples the rest of the chain from it ``samples``
times at the training temperature, through the same chat format and caps as the run's
held-out evaluation. Measured for the starting policy and a run's last adapter, cached in
the run folder.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

FOCUS_FILE = "focus.json"


def focus_accuracy(
    run_dir: Path, version: int | None, problems: int, samples: int, out: Path | None = None
) -> dict[str, Any]:
    """Pass rate of chains sampled from the correct prefix before the hard step.

    Args:
        run_dir: A HardStepChain run of ``thoughtmdp train``.
        version: The adapter version (0: the starting policy; ``None``: the last).
        problems: Held-out problems (the first of the test split).
        samples: Chains sampled from each problem's prefix.
        out: Where the result is cached (default: ``run_dir/focus.json``, keyed by version).

    Returns:
        ``{"version", "problems", "samples", "pass_rate", "se"}``: the mean over problems of
        the share of their samples that passed, with its standard error over problems.
    """
    from thoughtmdp.evaluation.trained import from_run
    from thoughtmdp.runs.export import find_adapter

    path = out or run_dir / FOCUS_FILE
    cached = json.loads(path.read_text()) if path.exists() else {}
    resolved = 0 if version == 0 else find_adapter(run_dir, version).version
    key = f"{resolved}/{problems}x{samples}"
    if key not in cached:
        policy = from_run(run_dir, resolved)
        cached[key] = {"version": resolved, **_measure(policy, problems, samples)}
        path.write_text(json.dumps(cached, indent=2) + "\n")
    return dict(cached[key])


def _measure(policy: Any, problems: int, samples: int) -> dict[str, Any]:
    from dataclasses import replace

    from thoughtmdp.agents.backends.transformers import TransformersBackend
    from thoughtmdp.envs.arith_chain import reference_thoughts
    from thoughtmdp.evaluation.engine import EvalEngine
    from thoughtmdp.mdp.task import make_task
    from thoughtmdp.types import PrefixState, Thought

    task = make_task(policy.task, **policy.task_options)
    settings = replace(policy.sampled, samples=samples)
    chosen = task.problems("test")[:problems]
    backend = TransformersBackend(policy.model, adapter=policy.adapter, max_batch_size=128)

    async def measure() -> list[float]:
        engine = EvalEngine(backend, task, settings, split="test")
        render = engine.env().chat.encode

        async def one(problem: Any) -> float:
            gold = reference_thoughts(problem)[: problem.payload["hard_step"] - 1]
            start = PrefixState(
                problem.id,
                tuple(render(task.render_prompt(problem))),
                tuple(Thought(text) for text in gold),
            )
            seeds = [engine.request_seed(problem.id, s) for s in range(samples)]
            chains = await asyncio.gather(*(engine.rollout(start, seed) for seed in seeds))
            return statistics.fmean(c.reward for c in chains)

        return list(await asyncio.gather(*(one(p) for p in chosen)))

    try:
        rates = asyncio.run(measure())
    finally:
        backend.close()
    se = statistics.stdev(rates) / len(rates) ** 0.5 if len(rates) > 1 else float("nan")
    return {
        "problems": len(rates),
        "samples": samples,
        "pass_rate": statistics.fmean(rates),
        "se": se,
    }
