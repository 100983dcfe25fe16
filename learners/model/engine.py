"""Optimiser engines: plain PyTorch AdamW in one process, or DeepSpeed ZeRO over several ranks.

Both offer one interface to the trainer: a forward call, ``backward(loss, boundary)`` for
each micro-batch, ``step()`` once per mini-batch (clip, AdamW, schedule, zero the gradients), the
adapter's weights (gathered under ZeRO-3), checkpoint save/load and a sum over ranks.

Both follow one precision policy (``LearnerConfig.dtype``). Under ``bfloat16`` the adapter
keeps fp32 master weights and computes in bf16 with the bf16 base: the local engine runs the
forward under autocast, DeepSpeed in its bf16 mode, gradients summed in fp32. On CUDA, fp32
matmuls may use TF32.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn

from thoughtmdp.learners.model.distributed import peer_failures
from thoughtmdp.learners.model.policy import DTYPES, adapter_parameters
from thoughtmdp.learners.schedule import lr_factor, optimizer_steps
from thoughtmdp.settings.deepspeed import deepspeed_config
from thoughtmdp.settings.learner import LearnerConfig, OptimSettings


class Engine(Protocol):
    """What the trainer needs from an optimiser engine."""

    model: nn.Module
    device: torch.device
    rank: int
    world_size: int

    def __call__(self, **inputs: Any) -> Any:
        """Forward pass of the policy."""
        ...

    def backward(self, loss: Tensor, boundary: bool) -> None:
        """Accumulate gradients; ``boundary`` marks a mini-batch's last micro-batch."""
        ...

    def step(self) -> float:
        """Clip, AdamW, advance the schedule, zero the gradients; returns the pre-clip norm."""
        ...

    @property
    def lr(self) -> float:
        """The current learning rate."""
        ...

    def adapter_state(self) -> dict[str, Tensor]:
        """Full adapter weights by parameter name, on the CPU (collective under ZeRO-3)."""
        ...

    def all_reduce(self, values: Tensor) -> Tensor:
        """Element-wise sum over ranks."""
        ...

    def save(self, folder: Path) -> None:
        """Write optimiser and adapter state into ``folder`` (every rank calls it)."""
        ...

    def load(self, folder: Path) -> None:
        """Restore what :meth:`save` wrote."""
        ...


def adamw(parameters: list[nn.Parameter], settings: OptimSettings) -> torch.optim.AdamW:
    """AdamW over the adapter's parameters."""
    return torch.optim.AdamW(
        parameters,
        lr=settings.lr,
        betas=settings.betas,
        eps=settings.eps,
        weight_decay=settings.weight_decay,
    )


def lr_scheduler(
    optimizer: torch.optim.Optimizer, settings: OptimSettings, total_steps: int | None
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of :mod:`thoughtmdp.learners.schedule`, stepped after each AdamW step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(settings, step, total_steps)
    )


class LocalEngine:
    """One process, plain PyTorch.

    Args:
        model: The policy (only parameters with ``requires_grad`` train).
        settings: Optimiser settings.
        device: Where to compute.
        total_steps: Optimiser steps of the whole run, for a decaying schedule.
        compute_dtype: The forward's dtype: below float32, it runs under autocast while the
            adapter's weights, gradients and AdamW stay in float32.
    """

    rank, world_size = 0, 1

    def __init__(
        self,
        model: nn.Module,
        settings: OptimSettings,
        device: torch.device,
        total_steps: int | None = None,
        compute_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.model, self.device = model.to(device), device
        self.compute_dtype = compute_dtype
        self.parameters = adapter_parameters(model)
        self.optimizer = adamw(list(self.parameters.values()), settings)
        self.scheduler = lr_scheduler(self.optimizer, settings, total_steps)
        self.max_grad_norm = settings.max_grad_norm

    def __call__(self, **inputs: Any) -> Any:  # noqa: D102
        if self.compute_dtype == torch.float32:
            return self.model(**inputs)
        from peft.helpers import disable_input_dtype_casting

        # PEFT would cast each LoRA input up to the fp32 weights; autocast casts down instead
        with (
            torch.autocast(self.device.type, dtype=self.compute_dtype),
            disable_input_dtype_casting(self.model),
        ):
            return self.model(**inputs)

    def backward(self, loss: Tensor, boundary: bool) -> None:  # noqa: D102
        loss.backward()

    def step(self) -> float:  # noqa: D102
        params = list(self.parameters.values())
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @property
    def lr(self) -> float:  # noqa: D102
        return float(self.optimizer.param_groups[0]["lr"])

    def adapter_state(self) -> dict[str, Tensor]:  # noqa: D102
        return {name: p.detach().cpu().clone() for name, p in self.parameters.items()}

    def all_reduce(self, values: Tensor) -> Tensor:  # noqa: D102
        return values

    def save(self, folder: Path) -> None:  # noqa: D102
        from safetensors.torch import save_file

        save_file(self.adapter_state(), str(folder / "adapter_state.safetensors"))
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")

    def load(self, folder: Path) -> None:  # noqa: D102
        from safetensors.torch import load_file

        weights = load_file(str(folder / "adapter_state.safetensors"))
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                parameter.copy_(weights[name])
        state = torch.load(folder / "optimizer.pt", map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state)
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))


class DeepSpeedEngine:
    """Several ranks under DeepSpeed ZeRO (stage 0-3), our AdamW as its client optimiser.

    Args:
        model: The policy.
        config: Learner settings (``deepspeed``, ``optim``, ``dtype``).
        device: This rank's device.
        ds_config: The DeepSpeed config (default: built from ``config``); under ZeRO-3 pass
            the one the policy was loaded under.
    """

    TAG = "engine"

    def __init__(
        self,
        model: nn.Module,
        config: LearnerConfig,
        device: torch.device,
        ds_config: dict[str, Any] | None = None,
    ) -> None:
        import deepspeed

        self.device, self.rank, self.world_size = device, dist.get_rank(), dist.get_world_size()
        self.parameters = adapter_parameters(model)
        params = list(self.parameters.values())
        ds_config = ds_config or deepspeed_config(config, self.world_size)
        optimizer = adamw(params, config.optim)
        scheduler = lr_scheduler(optimizer, config.optim, optimizer_steps(config))
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, model_parameters=params, lr_scheduler=scheduler,
            config=ds_config,
        )  # fmt: skip
        self.model = self.engine.module
        self.zero3 = ds_config.get("zero_optimization", {}).get("stage", 0) == 3

    def __call__(self, **inputs: Any) -> Any:  # noqa: D102
        return self.engine(**inputs)

    def backward(self, loss: Tensor, boundary: bool) -> None:  # noqa: D102
        self.engine.set_gradient_accumulation_boundary(boundary)
        self.engine.backward(loss)

    def step(self) -> float:  # noqa: D102
        self.engine.set_gradient_accumulation_boundary(True)
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    @property
    def lr(self) -> float:  # noqa: D102
        return float(self.optimizer.param_groups[0]["lr"])

    def adapter_state(self) -> dict[str, Tensor]:  # noqa: D102
        gathered: Any = contextlib.nullcontext()
        if self.zero3:  # gather the LoRA parameters only; the frozen base stays partitioned
            from deepspeed.runtime.zero import GatheredParameters

            gathered = GatheredParameters(list(self.parameters.values()), modifier_rank=None)
        with peer_failures("the adapter gather"), gathered:
            return {name: p.detach().cpu().clone() for name, p in self.parameters.items()}

    def all_reduce(self, values: Tensor) -> Tensor:  # noqa: D102
        values = values.to(self.device)
        with peer_failures("a sum over ranks"):
            dist.all_reduce(values)
        return values.cpu()

    def save(self, folder: Path) -> None:  # noqa: D102
        with peer_failures("the checkpoint"):
            self.engine.save_checkpoint(
                str(folder), tag=self.TAG, save_latest=False, exclude_frozen_parameters=True
            )

    def load(self, folder: Path) -> None:  # noqa: D102
        with peer_failures("the checkpoint load"):
            self.engine.load_checkpoint(str(folder), tag=self.TAG, load_module_strict=False)


def build_engine(
    model: nn.Module,
    config: LearnerConfig,
    device: torch.device,
    ds_config: dict[str, Any] | None = None,
) -> Engine:
    """DeepSpeed when ``config.deepspeed`` asks for it (``ds_config``: its config), else local."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if config.deepspeed.enabled:
        return DeepSpeedEngine(model, config, device, ds_config)
    dtype = DTYPES[config.dtype]
    return LocalEngine(model, config.optim, device, optimizer_steps(config), dtype)
