"""One learner step: episodes in, updated adapter and metrics out (no sockets, no files).

A step takes ``prompts_per_step`` episodes, splits them into mini-batches of
``prompts_per_minibatch`` and makes one optimiser step per mini-batch. Each mini-batch's loss
is exactly the loss of :mod:`thoughtmdp.learners.loss` over all of its rollouts, however it is
split into micro-batches and ranks: every micro-batch divides by the whole mini-batch's
normaliser, and the rank count undoes DeepSpeed's gradient averaging.

Each forward pass also yields the policy's entropy on the trained tokens and its KL from the
behaviour policy (``actor/entropy``, ``actor/ppo_kl``). With ``loss.kl_coef > 0`` a second,
gradient-free pass of the same tokens through the base model (the adapter switched off) gives
the reference log-probabilities of the KL penalty; with 0 that pass never runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from thoughtmdp.episodes.arrays import TrainingArrays
from thoughtmdp.episodes.metrics import episode_metrics
from thoughtmdp.learners.batching import MicroBatch, PaddedBatch, plan_microbatches, row_kinds
from thoughtmdp.learners.loss import PolicyLoss, build_loss, gradient_signal
from thoughtmdp.learners.model.distributed import peer_failures
from thoughtmdp.learners.model.engine import Engine, build_engine
from thoughtmdp.learners.model.policy import (
    TokenScores,
    base_policy,
    cache_argument,
    load_policy,
    token_logprobs,
    token_scores,
)
from thoughtmdp.learners.model.shared_prefix import shared_prefix_logprobs, shared_prefix_scores
from thoughtmdp.settings.deepspeed import deepspeed_config
from thoughtmdp.settings.learner import LearnerConfig
from thoughtmdp.types import Episode

# Sums reduced over ranks once per mini-batch, in this order.
SUMS = (
    "actor/pg_loss",
    "actor/active_tokens",
    "actor/pg_clipfrac",
    "actor/is_weight/mean",
    "actor/entropy",
    "actor/ppo_kl",
    "actor/mismatch_kl",
    "actor/kl_loss",
    "signal/base_sum",
    "signal/base_count",
    "signal/reset_sum",
    "signal/reset_count",
)


class Trainer:
    """Applies the masked policy-gradient update to the policy behind ``engine``.

    Args:
        config: Learner settings.
        engine: The optimiser engine holding the policy.
        loss: The loss, built once from ``config.loss``.
        pad_id: Token id used for padding (any valid id; padding is masked).
    """

    def __init__(self, config: LearnerConfig, engine: Engine, loss: PolicyLoss, pad_id: int):
        self.config, self.engine, self.loss, self.pad_id = config, engine, loss, pad_id
        self.cache_argument = cache_argument(engine.model)
        self.steps = 0

    def pad(self, episodes: Sequence[Episode]) -> PaddedBatch:
        """The step's episodes padded once, with this model's padding id."""
        return PaddedBatch.pad(episodes, self.pad_id)

    def step(self, batch: PaddedBatch) -> dict[str, float]:
        """One learner step on ``batch`` (every rank passes the same one).

        Args:
            batch: The step's episodes (``prompts_per_step`` of them normally), from :meth:`pad`.

        Returns:
            Metrics named as in :mod:`thoughtmdp.learners.metrics_log`.
        """
        start, lr = time.perf_counter(), self.engine.lr  # the step's first mini-batch's
        totals: dict[str, float] = defaultdict(float)
        chunks = batch.minibatches(self.config.prompts_per_minibatch)
        with peer_failures("the update"):  # a dead rank ends the run, named, not a hang
            for chunk in chunks:
                sums = self._update(chunk)
                for key, value in sums.items():
                    totals[key] += value
        self.steps += 1
        metrics = _summarise(totals, len(chunks), _has_behaviour(batch), self.loss.kl_coef)
        metrics["actor/lr"] = lr
        metrics["timing_s/update_actor"] = time.perf_counter() - start
        metrics.update(batch_metrics(batch))
        return metrics

    def _update(self, batch: PaddedBatch) -> dict[str, float]:
        """Forward and backward every micro-batch of one mini-batch, then one AdamW step."""
        arrays = batch.arrays
        tensors = _to_tensors(arrays, self.engine.device)
        is_reset = torch.from_numpy(row_kinds(batch) == "reset")  # (B,)
        mask = tensors["loss_mask"].float()  # (B, T)
        denominator = self.loss.aggregation.denominator(mask)
        planned = arrays
        if self.loss.kl_coef:  # the penalty has a gradient on zero-advantage rollouts too
            planned = dataclasses.replace(arrays, advantages=np.ones_like(arrays.advantages))
        plans = plan_microbatches(
            planned,
            self.engine.world_size,
            self.config.rollouts_per_microbatch,
            self.config.shared_prefix,
        )
        plan = plans[self.engine.rank]
        sums = torch.zeros(len(SUMS), dtype=torch.float64)
        for i, micro in enumerate(plan):
            rows = torch.tensor(micro.rows, device=self.engine.device)
            part = {k: v[rows][:, : micro.width] for k, v in tensors.items() if v.dim() == 2}
            advantages = tensors["advantages"][rows]  # (b,)
            reference = self._reference_logprobs(part, micro) if self.loss.kl_coef else None
            scores = self._scores(part, micro)  # (b, W) each
            loss, metrics = self.loss(
                scores.logprobs,
                part["loss_mask"],
                advantages,
                part["behaviour_logprobs"],
                denominator,
                reference,
            )
            self.engine.backward(loss * micro.weight * self.engine.world_size, i == len(plan) - 1)
            if micro.weight:
                metrics["actor/entropy"] = (scores.entropy * part["loss_mask"]).sum()
                signal = gradient_signal(scores.logprobs, part["loss_mask"], advantages)
                trained = (advantages != 0).cpu()
                sums += _sum_vector(metrics, signal.cpu(), is_reset[rows.cpu()], trained)
        grad_norm = self.engine.step()
        reduced = self.engine.all_reduce(sums).tolist()
        result = dict(zip(SUMS, reduced, strict=True))
        result["actor/grad_norm"] = grad_norm
        return result

    def _scores(self, part: dict[str, Tensor], micro: MicroBatch) -> TokenScores:
        temperature = self.config.loss.temperature
        if micro.shared:
            return shared_prefix_scores(
                self.engine, part["input_ids"], micro.first_target, temperature, self.cache_argument
            )
        return token_scores(self.engine, part["input_ids"], temperature, micro.first_target)

    def _reference_logprobs(self, part: dict[str, Tensor], micro: MicroBatch) -> Tensor:
        """``log pi_ref``: the same forward pass through the base model, without gradient."""
        temperature = self.config.loss.temperature
        with base_policy(self.engine.model):
            if micro.shared:
                return shared_prefix_logprobs(
                    self.engine,
                    part["input_ids"],
                    micro.first_target,
                    temperature,
                    self.cache_argument,
                )
            return token_logprobs(self.engine, part["input_ids"], temperature, micro.first_target)


def _to_tensors(arrays: TrainingArrays, device: torch.device) -> dict[str, Tensor]:
    return {
        "input_ids": torch.from_numpy(arrays.input_ids).to(device),  # (B, T)
        "loss_mask": torch.from_numpy(arrays.loss_mask).to(device),  # (B, T)
        "behaviour_logprobs": torch.from_numpy(arrays.behaviour_logprobs).to(device),  # (B, T)
        "advantages": torch.from_numpy(arrays.advantages).to(device),  # (B,)
    }


def _sum_vector(
    metrics: dict[str, Tensor], signal: Tensor, is_reset: Tensor, trained: Tensor
) -> Tensor:
    """The micro-batch's contribution to :data:`SUMS` (signal over rollouts with ``A_i != 0``)."""
    values = {k: float(v) for k, v in metrics.items()}
    base, is_reset = ~is_reset & trained, is_reset & trained
    values["signal/base_sum"] = float(signal[base].sum())
    values["signal/base_count"] = float(base.sum())
    values["signal/reset_sum"] = float(signal[is_reset].sum())
    values["signal/reset_count"] = float(is_reset.sum())
    return torch.tensor([values.get(k, 0.0) for k in SUMS], dtype=torch.float64)


def _summarise(
    totals: dict[str, float], minibatch_count: int, has_behaviour: bool, kl_coef: float
) -> dict[str, float]:
    """Per-step metrics from the sums over mini-batches and ranks."""
    metrics = {
        "actor/pg_loss": totals["actor/pg_loss"] / minibatch_count,
        "actor/grad_norm": totals["actor/grad_norm"] / minibatch_count,
    }
    tokens = max(totals["actor/active_tokens"], 1.0)
    for key in ("actor/pg_clipfrac", "actor/is_weight/mean"):
        if totals[key]:
            metrics[key] = totals[key] / tokens
    if totals["actor/active_tokens"]:
        metrics["actor/entropy"] = totals["actor/entropy"] / tokens
        if has_behaviour:  # without the sampler's log-probabilities there is nothing to compare
            metrics["actor/ppo_kl"] = totals["actor/ppo_kl"] / tokens
            metrics["actor/mismatch_kl"] = totals["actor/mismatch_kl"] / tokens
    if kl_coef:
        metrics["actor/kl_loss"] = totals["actor/kl_loss"] / minibatch_count
        metrics["actor/kl_coef"] = kl_coef
    for kind in ("base", "reset"):
        if totals[f"signal/{kind}_count"]:
            metrics[f"signal/{kind}_mean"] = (
                totals[f"signal/{kind}_sum"] / totals[f"signal/{kind}_count"]
            )
    if metrics.get("signal/base_mean") and "signal/reset_mean" in metrics:
        metrics["signal/reset_to_base"] = metrics["signal/reset_mean"] / metrics["signal/base_mean"]
    return metrics


def _has_behaviour(batch: PaddedBatch) -> bool:
    """Whether any trained token carries a behaviour log-probability (0 means not reported)."""
    arrays = batch.arrays
    return bool(np.any(arrays.behaviour_logprobs[arrays.loss_mask] != 0))


def batch_metrics(batch: PaddedBatch) -> dict[str, float]:
    """Metrics of the data alone: token counts, response length, rewards and resets."""
    arrays = batch.arrays
    metrics = episode_metrics(batch.episodes)
    metrics["perf/total_num_tokens"] = float(arrays.attention_mask.sum())
    metrics["perf/rollouts"] = float(arrays.input_ids.shape[0])
    metrics["response_length/mean"] = float(np.mean(arrays.loss_mask.sum(axis=1)))
    return metrics


def build_trainer(config: LearnerConfig, device: torch.device | None = None) -> Trainer:
    """Load the policy, wrap it in its engine and build the loss.

    Under DeepSpeed the process group is joined first, so that under ZeRO-3 the policy loads
    partitioned, under the DeepSpeed config the engine is built with.

    Args:
        config: Learner settings.
        device: Where to compute; default from ``config.device`` (under DeepSpeed, the
            rank's device after joining the process group).

    Returns:
        A ready :class:`Trainer`.
    """
    if device is None:
        device = _device(config)
    torch.manual_seed(config.seed)
    ds_config = None
    if config.deepspeed.enabled:
        ds_config = deepspeed_config(config, torch.distributed.get_world_size())
    model = load_policy(config, ds_config)
    engine = build_engine(model, config, device, ds_config)
    pad_id = getattr(model.config, "pad_token_id", None)
    if pad_id is None:
        pad_id = getattr(model.config, "eos_token_id", None) or 0
    return Trainer(config, engine, build_loss(config.loss), int(pad_id))


def _device(config: LearnerConfig) -> torch.device:
    if config.deepspeed.enabled:
        from thoughtmdp.learners.model.distributed import init_distributed

        return init_distributed(config.deepspeed)
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)
