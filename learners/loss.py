"""The prefix-masked policy-gradient loss (paper section 4.3) and its optional variants.

Per rollout ``i`` with ``T_i`` active (unmasked) tokens, ``L_i = -(A_i / T_i) sum_t log pi(y_it)``
and the batch loss is the mean of ``L_i`` over rollouts. A reset rollout's prefix is masked,
so ``T_i`` counts its suffix only. Variants (token-mean or constant normalisers, PPO clipping,
truncated importance weights) are picked once by :func:`build_loss`, never inside a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from thoughtmdp.settings.learner import LossSettings


class Aggregation(Protocol):
    """How token terms become one number: ``sum_i w_i sum_t term_it / D``."""

    def row_weights(self, mask: Tensor) -> Tensor:
        """``w_i`` of every rollout, from the float mask ``(B, T)``; shape ``(B,)``."""
        ...

    def denominator(self, mask: Tensor) -> Tensor:
        """``D``, a scalar tensor."""
        ...


@dataclass(frozen=True)
class SeqMean:
    """Mean over each rollout's active tokens, then over rollouts (the paper's)."""

    def row_weights(self, mask: Tensor) -> Tensor:  # noqa: D102
        return 1.0 / mask.sum(-1).clamp(min=1)  # (B,) 1/T_i; an empty mask counts as 1

    def denominator(self, mask: Tensor) -> Tensor:  # noqa: D102
        return torch.tensor(float(mask.shape[0]), dtype=mask.dtype, device=mask.device)


@dataclass(frozen=True)
class TokenMean:
    """Mean over all active tokens of the batch (long rollouts weigh more)."""

    def row_weights(self, mask: Tensor) -> Tensor:  # noqa: D102
        return torch.ones(mask.shape[0], dtype=mask.dtype, device=mask.device)

    def denominator(self, mask: Tensor) -> Tensor:  # noqa: D102
        return mask.sum().clamp(min=1)


@dataclass(frozen=True)
class ConstantNorm:
    """Token sums over a constant, ``tokens`` per rollout (Dr. GRPO, arXiv:2503.20783)."""

    tokens: int = 4096

    def row_weights(self, mask: Tensor) -> Tensor:  # noqa: D102
        return torch.ones(mask.shape[0], dtype=mask.dtype, device=mask.device)

    def denominator(self, mask: Tensor) -> Tensor:  # noqa: D102
        return torch.tensor(
            float(mask.shape[0] * self.tokens), dtype=mask.dtype, device=mask.device
        )


AGGREGATIONS: dict[str, Aggregation] = {
    "seq-mean": SeqMean(),
    "token-mean": TokenMean(),
    "dr-grpo": ConstantNorm(),
}


def masked_pg_loss(
    logprobs: Tensor, loss_mask: Tensor, advantages: Tensor, aggregation: str = "seq-mean"
) -> tuple[Tensor, dict[str, float]]:
    """The paper's loss: ``mean_i -(A_i / T_i) sum_t log pi(y_it)`` (section 4.3).

    A rollout whose advantage is 0 adds nothing but still counts in the mean; an empty mask
    counts as one token. Equivalent to ``build_loss(LossSettings(aggregation=...))``.

    Args:
        logprobs: ``log pi(y_it | ...)`` of each token.  # (B, T)
        loss_mask: True on the tokens that carry loss (the sampled suffix).  # (B, T)
        advantages: ``A_i`` of each rollout.  # (B,)
        aggregation: ``seq-mean``, ``token-mean`` or ``dr-grpo`` (normaliser 4096 tokens).

    Returns:
        The scalar loss and ``{"actor/pg_loss": value}``.

    >>> logprobs = torch.log(torch.tensor([[0.5, 0.5, 0.25], [0.5, 0.5, 0.5]]))
    >>> mask = torch.tensor([[False, True, True], [True, True, True]])
    >>> loss, _ = masked_pg_loss(logprobs, mask, torch.tensor([1.0, 0.0]))
    >>> round(loss.item(), 4)  # L_0 = -(1/2) log(0.5 * 0.25), L_1 = 0; mean of the two
    0.5199
    """
    weights = AGGREGATIONS[aggregation]
    mask = loss_mask.to(logprobs.dtype)  # (B, T)
    sum_logprobs = (logprobs * mask).sum(-1)  # (B,) sum_t log pi(y_it)
    per_rollout = -advantages * weights.row_weights(mask) * sum_logprobs  # (B,) L_i
    loss = per_rollout.sum() / weights.denominator(mask)
    return loss, {"actor/pg_loss": loss.item()}


class Surrogate(Protocol):
    """Per-token objective to maximise (``A_i log pi`` in the paper), with its metrics."""

    def __call__(
        self, logprobs: Tensor, behaviour: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Token objectives ``(B, T)`` and metric sums over active tokens."""
        ...


@dataclass(frozen=True)
class PolicyGradient:
    """``A_i log pi(y_it)``: the plain on-policy gradient (the paper's)."""

    def __call__(  # noqa: D102
        self, logprobs: Tensor, behaviour: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return advantages[:, None] * logprobs, {}


@dataclass(frozen=True)
class TruncatedImportance:
    """``min(pi/mu, C) A_i log pi``: stale tokens reweighted by a capped, detached ratio."""

    cap: float  # C

    def __call__(  # noqa: D102
        self, logprobs: Tensor, behaviour: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        weight = torch.exp(logprobs.detach() - behaviour).clamp(max=self.cap)  # (B, T)
        terms = weight * advantages[:, None] * logprobs
        return terms, {"actor/is_weight/mean": (weight * mask).sum()}


@dataclass(frozen=True)
class ClippedRatio:
    """PPO's ``min(r A, clip(r, 1-eps, 1+eps) A)`` with ``r = pi/mu`` (arXiv:1707.06347)."""

    eps: float

    def __call__(  # noqa: D102
        self, logprobs: Tensor, behaviour: Tensor, advantages: Tensor, mask: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        ratio = torch.exp(logprobs - behaviour)  # (B, T)
        a = advantages[:, None]
        clipped = ratio.clamp(1 - self.eps, 1 + self.eps) * a
        terms = torch.minimum(ratio * a, clipped)
        return terms, {"actor/pg_clipfrac": ((clipped < ratio * a).to(mask.dtype) * mask).sum()}


@dataclass(frozen=True)
class PolicyLoss:
    """A loss built once from its parts: ``-sum_i w_i sum_t objective_it / D``.

    Attributes:
        aggregation: How token terms are normalised (``w_i`` and ``D``).
        surrogate: The per-token objective.
    """

    aggregation: Aggregation = field(default_factory=SeqMean)
    surrogate: Surrogate = field(default_factory=PolicyGradient)

    def __call__(
        self,
        logprobs: Tensor,
        loss_mask: Tensor,
        advantages: Tensor,
        behaviour_logprobs: Tensor | None = None,
        denominator: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of a (micro-)batch.

        Args:
            logprobs: Current log-probabilities.  # (B, T)
            loss_mask: Tokens that carry loss.  # (B, T)
            advantages: ``A_i``.  # (B,)
            behaviour_logprobs: The sampler's log-probabilities, for ratio-based variants.
            denominator: ``D`` of the whole batch when this is one micro-batch of it, so
                that the micro-batch losses add up to the batch loss.

        Returns:
            The scalar loss and metric *sums* over active tokens (detached), with
            ``actor/pg_loss`` and ``actor/active_tokens``.
        """
        mask = loss_mask.to(logprobs.dtype)  # (B, T)
        behaviour = torch.zeros_like(logprobs) if behaviour_logprobs is None else behaviour_logprobs
        terms, sums = self.surrogate(logprobs, behaviour, advantages, mask)  # (B, T)
        per_rollout = -self.aggregation.row_weights(mask) * (terms * mask).sum(-1)  # (B,)
        if denominator is None:
            denominator = self.aggregation.denominator(mask)
        loss = per_rollout.sum() / denominator
        metrics = {k: v.detach() for k, v in sums.items()}
        metrics["actor/pg_loss"] = loss.detach()
        metrics["actor/active_tokens"] = mask.sum()
        return loss, metrics


def build_loss(settings: LossSettings) -> PolicyLoss:
    """The loss the settings describe (variants are chosen here, once).

    Args:
        settings: The loss settings.

    Returns:
        A callable :class:`PolicyLoss`.
    """
    aggregation: Aggregation = AGGREGATIONS[settings.aggregation]
    if settings.aggregation == "dr-grpo":
        aggregation = ConstantNorm(settings.dr_grpo_tokens)
    surrogate: Surrogate = PolicyGradient()
    if settings.clip_eps is not None:
        surrogate = ClippedRatio(settings.clip_eps)
    elif settings.is_cap is not None:
        surrogate = TruncatedImportance(settings.is_cap)
    return PolicyLoss(aggregation, surrogate)


def gradient_signal(logprobs: Tensor, loss_mask: Tensor, advantages: Tensor) -> Tensor:
    """Mean per-token gradient signal of each rollout (paper appendix 14).

    ``g_it = (|A_i| / T_i)(1 - pi(y_it))`` is the size of the loss gradient on the sampled
    token's logit (up to the batch's ``1/B``); this returns ``mean_t g_it`` over each
    rollout's active tokens (0 for an empty mask).

    Args:
        logprobs: Log-probabilities of the sampled tokens.  # (B, T)
        loss_mask: Active tokens.  # (B, T)
        advantages: ``A_i``.  # (B,)

    Returns:
        ``g_bar_i`` of each rollout.  # (B,)

    >>> lp = torch.log(torch.tensor([[0.5, 0.75]]))
    >>> gradient_signal(lp, torch.tensor([[True, True]]), torch.tensor([-2.0])).tolist()
    [0.375]
    """
    mask = loss_mask.to(logprobs.dtype)  # (B, T)
    tokens = mask.sum(-1).clamp(min=1)  # (B,) T_i
    one_minus_pi = ((1 - torch.exp(logprobs.detach())) * mask).sum(-1) / tokens  # (B,)
    return advantages.abs() / tokens * one_minus_pi
