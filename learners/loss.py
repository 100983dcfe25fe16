"""The prefix-masked policy-gradient loss (paper section 4.3) and its optional variants.

Per rollout ``i`` with ``T_i`` active (unmasked) tokens, ``L_i = -(A_i / T_i) sum_t log pi(y_it)``
and the batch loss is the mean of ``L_i`` over rollouts. A reset rollout's prefix is masked,
so ``T_i`` counts its suffix only. Variants (token-mean or constant normalisers, PPO clipping,
truncated importance weights, a KL penalty towards the base model) are picked once by
:func:`build_loss`, never inside a step.

Besides the loss, the learner watches how far the policy it trains has moved from the one that
sampled the tokens (:func:`behaviour_kl`, verl's ``actor/ppo_kl``): the staleness of
asynchronous actors and any sampler/learner mismatch show up there.
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


def low_var_kl(logprobs: Tensor, reference_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimate of ``KL(pi || pi_ref)``: ``r - log r - 1`` with ``r = pi_ref / pi``.

    Non-negative, unbiased for tokens sampled from ``pi``, and lower-variance than
    ``log pi - log pi_ref`` (J. Schulman, http://joschu.net/blog/kl-approx.html). verl's
    ``low_var_kl``, clamped as there: ``log r`` to [-20, 20] and the estimate to at most 10.

    Args:
        logprobs: ``log pi`` of the sampled tokens (gradient flows through these).  # (B, T)
        reference_logprobs: ``log pi_ref`` of the same tokens.  # (B, T)

    Returns:
        The estimate at every token.  # (B, T)

    >>> k3 = low_var_kl(torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25])))
    >>> round(k3.item(), 4)  # r = 1/2: 1/2 + ln 2 - 1
    0.1931
    """
    log_ratio = (reference_logprobs - logprobs).clamp(-20.0, 20.0)  # log r
    return (log_ratio.exp() - log_ratio - 1).clamp(max=10.0)


def behaviour_kl(logprobs: Tensor, behaviour_logprobs: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Two estimates of ``KL(mu || pi)`` from tokens ``mu`` sampled, summed over active tokens.

    ``mu`` is the behaviour policy (the actor's, its log-probabilities on the wire) and ``pi``
    the current one. Per token, with ``r = pi / mu``: k1 ``= log mu - log pi = -log r``
    (verl's ``actor/ppo_kl``, old minus current) and k3 ``= r - log r - 1`` (prime-rl's
    ``mismatch_kl``; non-negative, lower variance). Divide by the active tokens for the means.

    Args:
        logprobs: ``log pi`` (detached here).  # (B, T)
        behaviour_logprobs: ``log mu``.  # (B, T)
        mask: Float mask of the active tokens.  # (B, T)

    Returns:
        ``{"actor/ppo_kl": sum k1, "actor/mismatch_kl": sum k3}``.

    >>> lp = torch.log(torch.tensor([[0.5, 0.25]]))
    >>> mu = torch.log(torch.tensor([[0.25, 0.25]]))
    >>> {k: round(v.item(), 4) for k, v in behaviour_kl(lp, mu, torch.ones(1, 2)).items()}
    {'actor/ppo_kl': -0.6931, 'actor/mismatch_kl': 0.3069}
    """
    log_ratio = (logprobs.detach() - behaviour_logprobs).clamp(-20.0, 20.0)  # (B, T) log r
    k3 = log_ratio.exp() - log_ratio - 1
    return {"actor/ppo_kl": (-log_ratio * mask).sum(), "actor/mismatch_kl": (k3 * mask).sum()}


@dataclass(frozen=True)
class PolicyLoss:
    """A loss built once from its parts: ``-sum_i w_i sum_t (objective_it - beta k3_it) / D``.

    With ``beta = 0`` (the default, the paper's) the penalty term is not computed at all.

    Attributes:
        aggregation: How token terms are normalised (``w_i`` and ``D``).
        surrogate: The per-token objective.
        kl_coef: ``beta``, the weight of the :func:`low_var_kl` penalty towards a reference
            policy, aggregated as the objective is.
    """

    aggregation: Aggregation = field(default_factory=SeqMean)
    surrogate: Surrogate = field(default_factory=PolicyGradient)
    kl_coef: float = 0.0  # beta

    def __call__(
        self,
        logprobs: Tensor,
        loss_mask: Tensor,
        advantages: Tensor,
        behaviour_logprobs: Tensor | None = None,
        denominator: Tensor | None = None,
        reference_logprobs: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of a (micro-)batch.

        Args:
            logprobs: Current log-probabilities.  # (B, T)
            loss_mask: Tokens that carry loss.  # (B, T)
            advantages: ``A_i``.  # (B,)
            behaviour_logprobs: The sampler's log-probabilities, for ratio-based variants.
            denominator: ``D`` of the whole batch when this is one micro-batch of it, so
                that the micro-batch losses add up to the batch loss.
            reference_logprobs: ``log pi_ref`` of the tokens, needed when ``kl_coef > 0``.

        Returns:
            The scalar loss and metric *sums* over active tokens (detached), with
            ``actor/pg_loss``, ``actor/active_tokens``, :func:`behaviour_kl`'s sums (given
            behaviour log-probabilities) and ``actor/kl_loss`` (with ``kl_coef > 0``; the
            penalty before ``beta``, aggregated as the loss).

        Raises:
            ValueError: If ``kl_coef > 0`` and ``reference_logprobs`` is missing.
        """
        mask = loss_mask.to(logprobs.dtype)  # (B, T)
        behaviour = torch.zeros_like(logprobs) if behaviour_logprobs is None else behaviour_logprobs
        terms, sums = self.surrogate(logprobs, behaviour, advantages, mask)  # (B, T)
        weights = self.aggregation.row_weights(mask)  # (B,) w_i
        per_rollout = -weights * (terms * mask).sum(-1)  # (B,)
        if denominator is None:
            denominator = self.aggregation.denominator(mask)
        loss = per_rollout.sum() / denominator
        metrics = {k: v.detach() for k, v in sums.items()}
        metrics["actor/pg_loss"] = loss.detach()
        metrics["actor/active_tokens"] = mask.sum()
        if behaviour_logprobs is not None:
            metrics.update(behaviour_kl(logprobs, behaviour_logprobs, mask))
        if self.kl_coef:
            if reference_logprobs is None:
                raise ValueError("PolicyLoss with kl_coef > 0 needs reference_logprobs")
            kl = low_var_kl(logprobs, reference_logprobs)  # (B, T) k3_it
            kl_loss = (weights * (kl * mask).sum(-1)).sum() / denominator
            loss = loss + self.kl_coef * kl_loss
            metrics["actor/kl_loss"] = kl_loss.detach()
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
    return PolicyLoss(aggregation, surrogate, settings.kl_coef)


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
