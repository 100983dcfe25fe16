"""The learner: masked policy-gradient loss, LoRA model, DeepSpeed engine, checkpoints.

Importing this package is cheap; names that need torch load on first use, e.g.
``thoughtmdp.learners.masked_pg_loss``. Settings (:class:`LearnerConfig`) never need torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from thoughtmdp.settings.deepspeed import DeepSpeedSettings
from thoughtmdp.settings.learner import (
    LearnerConfig,
    LoraSettings,
    LossSettings,
    OptimSettings,
)

if TYPE_CHECKING:
    from thoughtmdp.learners.loss import PolicyLoss, build_loss, gradient_signal, masked_pg_loss
    from thoughtmdp.learners.process import LearnerLoop, run_learner
    from thoughtmdp.learners.publish import AdapterPublisher
    from thoughtmdp.learners.trainer import Trainer, build_trainer

_LAZY = {
    "masked_pg_loss": "loss",
    "build_loss": "loss",
    "gradient_signal": "loss",
    "PolicyLoss": "loss",
    "Trainer": "trainer",
    "build_trainer": "trainer",
    "LearnerLoop": "process",
    "run_learner": "process",
    "AdapterPublisher": "publish",
}

__all__ = [
    "AdapterPublisher",
    "DeepSpeedSettings",
    "LearnerConfig",
    "LearnerLoop",
    "LoraSettings",
    "LossSettings",
    "OptimSettings",
    "PolicyLoss",
    "Trainer",
    "build_loss",
    "build_trainer",
    "gradient_signal",
    "masked_pg_loss",
    "run_learner",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
