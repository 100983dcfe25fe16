"""DeepSpeed settings of a multi-process learner, and the DeepSpeed config built from them.

No DeepSpeed import here: the settings are checked before the learner starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thoughtmdp.errors import ConfigError

if TYPE_CHECKING:
    from thoughtmdp.settings.learner import LearnerConfig


@dataclass(frozen=True)
class DeepSpeedSettings:
    """DeepSpeed for several processes (``None`` stage and file: plain PyTorch, one process).

    Attributes:
        zero_stage: ZeRO stage (0-3) of a generated DeepSpeed config.
        config_file: A DeepSpeed JSON config to use instead; its batch sizes, optimizer and
            scheduler are replaced by the learner's own.
        backend: ``torch.distributed`` backend; ``None`` picks gloo on CPU, the
            accelerator's default (nccl) elsewhere.
        collective_timeout_s: Seconds a training collective (gradient reduction, ZeRO
            gathers, metric sums) may wait for the other ranks before the run ends with an
            error: a rank that died or hangs stops the others within this time.
        episode_timeout_s: Seconds the other ranks may wait for rank 0 to hand out a step's
            episodes (it waits for the actors meanwhile).
    """

    zero_stage: int | None = None
    config_file: Path | None = None
    backend: str | None = None
    collective_timeout_s: float = 600.0
    episode_timeout_s: float = 6 * 3600.0

    @property
    def enabled(self) -> bool:
        """Whether the learner runs a DeepSpeed engine."""
        return self.zero_stage is not None or self.config_file is not None


def deepspeed_config(config: LearnerConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON config of a run: the user's file, or one generated from ``config``.

    The learner drives batching itself (one micro-batch per ``backward``, boundaries set by
    hand), so batch sizes are pinned to one per rank; it passes its own AdamW, so any
    optimizer or scheduler section of the file is dropped. Under bf16 (``dtype=bfloat16``
    or the file's ``bf16.enabled``) gradients accumulate in fp32
    (``data_types.grad_accum_dtype``, unless the file sets it) and ZeRO stage 0 is refused:
    only the ZeRO optimisers keep fp32 master weights of a bf16 model.

    Args:
        config: The learner's settings.
        world_size: Number of ranks.

    Returns:
        A config dictionary for ``deepspeed.initialize``.

    >>> from thoughtmdp.settings.learner import LearnerConfig
    >>> cfg = deepspeed_config(LearnerConfig(deepspeed=DeepSpeedSettings(zero_stage=3)), 2)
    >>> cfg["zero_optimization"], cfg["train_batch_size"], cfg["gradient_clipping"]
    ({'stage': 3}, 2, 1.0)
    >>> bf16 = LearnerConfig(dtype="bfloat16", deepspeed=DeepSpeedSettings(zero_stage=2))
    >>> deepspeed_config(bf16, 2)["data_types"]
    {'grad_accum_dtype': 'fp32'}

    Raises:
        ConfigError: For bf16 without ZeRO (stage 0).
    """
    settings = config.deepspeed
    data: dict[str, Any] = {}
    if settings.config_file is not None:
        data = json.loads(Path(settings.config_file).read_text())
    for key in ("optimizer", "scheduler"):
        data.pop(key, None)
    if settings.zero_stage is not None:
        data["zero_optimization"] = {
            **data.get("zero_optimization", {}),
            "stage": settings.zero_stage,
        }
    data.setdefault("bf16", {"enabled": config.dtype == "bfloat16"})
    if data["bf16"].get("enabled") is True:
        _keep_fp32_gradients(data)
    data.update(
        train_batch_size=world_size,
        train_micro_batch_size_per_gpu=1,
        gradient_accumulation_steps=1,
        gradient_clipping=config.optim.max_grad_norm,
        steps_per_print=2**31 - 1,
    )
    return data


def _keep_fp32_gradients(data: dict[str, Any]) -> None:
    """bf16 compute on fp32 master weights, gradients summed over micro-batches in fp32."""
    from thoughtmdp.settings.learner import NO_MASTER_WEIGHTS

    if data.get("zero_optimization", {}).get("stage", 0) == 0:
        raise ConfigError(NO_MASTER_WEIGHTS)
    data.setdefault("data_types", {}).setdefault("grad_accum_dtype", "fp32")
