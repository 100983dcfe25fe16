"""The learning-rate schedule: a multiplier of ``optim.lr`` per optimiser step (no torch here).

``constant`` keeps ``lr`` (the paper's choice). ``linear`` and ``cosine`` warm up linearly
over ``warmup_steps``, then decay to ``final_lr_ratio * lr``, reached at the run's last
optimiser step (``max_steps`` learner steps times the mini-batches of a step).
"""

from __future__ import annotations

import math

from thoughtmdp.settings.learner import LearnerConfig, OptimSettings


def lr_factor(settings: OptimSettings, step: int, total_steps: int | None) -> float:
    """The multiplier of ``settings.lr`` for the optimiser step after ``step`` steps.

    Args:
        settings: The optimiser settings (``schedule``, ``warmup_steps``, ``final_lr_ratio``).
        step: Optimiser steps already taken.
        total_steps: Optimiser steps of the whole run (needed unless the schedule is constant).

    Returns:
        The factor, in ``[0, 1]``.

    >>> s = OptimSettings(schedule="linear", warmup_steps=2, final_lr_ratio=0.0)
    >>> [round(lr_factor(s, k, 6), 2) for k in range(7)]
    [0.5, 1.0, 1.0, 0.67, 0.33, 0.0, 0.0]
    >>> round(lr_factor(OptimSettings(schedule="cosine"), 2, 5), 2)
    0.5
    """
    warmup = settings.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if settings.schedule == "constant":
        return 1.0
    if total_steps is None:
        raise ValueError(f"optim.schedule={settings.schedule} needs the run's length")
    decay_steps = max(total_steps - warmup - 1, 1)  # the last step runs at the final lr
    progress = min((step - warmup) / decay_steps, 1.0)
    shape = (
        1.0 - progress
        if settings.schedule == "linear"
        else 0.5 * (1 + math.cos(math.pi * progress))
    )
    final = settings.final_lr_ratio
    return final + (1.0 - final) * shape


def optimizer_steps(config: LearnerConfig) -> int | None:
    """Optimiser steps in the whole run (``None`` when ``max_steps`` is unset)."""
    if config.max_steps is None:
        return None
    return config.max_steps * (config.prompts_per_step // config.prompts_per_minibatch)
