"""The masked policy-gradient loss against hand-computed values and the closed-form gradient."""

from __future__ import annotations

import math
import re

import pytest
import torch

from thoughtmdp.errors import ConfigError
from thoughtmdp.learners import LearnerConfig, LossSettings, masked_pg_loss
from thoughtmdp.learners.loss import (
    ClippedRatio,
    ConstantNorm,
    PolicyGradient,
    PolicyLoss,
    SeqMean,
    TokenMean,
    TruncatedImportance,
    build_loss,
    gradient_signal,
)
from thoughtmdp.learners.model.policy import gather_logprobs

LN2 = math.log(2)
GARBAGE = -100.0  # log-probs under the mask must not matter


def hand_batch():
    """Four rollouts: a base one, a prefix-masked reset one, A = 0, an empty mask."""
    probs = torch.tensor(
        [
            [1.0, 0.5, 0.25, 0.5],  # base: prompt masked, 3 sampled tokens, A = +1
            [1.0, 1.0, 0.5, 0.125],  # reset: prompt and prefix masked, 2 suffix tokens, A = -1/2
            [1.0, 0.3, 0.7, 1.0],  # zero advantage, 2 tokens
            [1.0, 1.0, 1.0, 1.0],  # nothing sampled, A = 2
        ]
    )
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    logprobs = torch.where(mask, probs.log(), torch.full_like(probs, GARBAGE))
    advantages = torch.tensor([1.0, -0.5, 0.0, 2.0])
    return logprobs, mask, advantages


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        # L_0 = -(1/3)(-4 ln2), L_1 = -(-1/2 / 2)(-4 ln2) = -ln2, L_2 = L_3 = 0; mean over 4
        ("seq-mean", LN2 / 12),
        # token sums 4 ln2 and -2 ln2 over 3 + 2 + 2 + 0 active tokens
        ("token-mean", 2 * LN2 / 7),
        # token sums over 4 rollouts x 4096 tokens
        ("dr-grpo", 2 * LN2 / (4 * 4096)),
    ],
)
def test_masked_pg_loss_matches_hand_computed_values(aggregation, expected):
    logprobs, mask, advantages = hand_batch()
    loss, metrics = masked_pg_loss(logprobs, mask, advantages, aggregation)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics == {"actor/pg_loss": pytest.approx(expected, rel=1e-6)}
    built, _ = build_loss(LossSettings(aggregation=aggregation))(logprobs, mask, advantages)
    assert built.item() == pytest.approx(expected, rel=1e-6)


def test_dr_grpo_normaliser_is_configurable():
    logprobs, mask, advantages = hand_batch()
    loss, _ = build_loss(LossSettings(aggregation="dr-grpo", dr_grpo_tokens=10))(
        logprobs, mask, advantages
    )
    assert loss.item() == pytest.approx(2 * LN2 / 40, rel=1e-6)


def test_zero_advantage_rollouts_add_nothing_but_count_in_the_batch():
    logprobs, mask, advantages = hand_batch()
    first_two, _ = masked_pg_loss(logprobs[:2], mask[:2], advantages[:2])
    all_four, _ = masked_pg_loss(logprobs, mask, advantages)
    assert all_four.item() == pytest.approx(first_two.item() * 2 / 4, rel=1e-6)


def test_gradient_on_the_sampled_logit_has_the_closed_form():
    torch.manual_seed(0)
    _, mask, advantages = hand_batch()
    batch, width, vocab = mask.shape[0], mask.shape[1], 7
    logits = torch.randn(batch, width, vocab, requires_grad=True)
    targets = torch.randint(0, vocab, (batch, width))
    logprobs = gather_logprobs(logits, targets, temperature=1.0)
    loss, _ = masked_pg_loss(logprobs, mask, advantages)
    loss.backward()
    pi = torch.softmax(logits.detach(), -1).gather(-1, targets[..., None]).squeeze(-1)
    tokens = mask.sum(-1).clamp(min=1)
    closed_form = -(advantages / tokens)[:, None] * (1 - pi) / batch  # (B, T)
    sampled_grad = logits.grad.gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(sampled_grad[mask], closed_form[mask], atol=1e-7)
    assert torch.all(logits.grad[~mask] == 0)  # masked prefix tokens get no direct term
    assert torch.all(logits.grad[2] == 0)  # a zero advantage gives no gradient


def test_temperature_scales_logits_before_the_softmax():
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 5, requires_grad=True)
    targets = torch.tensor([[0, 3, 4]])
    got = gather_logprobs(logits, targets, temperature=0.7)
    expected = torch.log_softmax(logits / 0.7, -1).gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(got, expected)
    got.sum().backward()
    pi = torch.softmax(logits.detach() / 0.7, -1).gather(-1, targets[..., None]).squeeze(-1)
    picked = logits.grad.gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(picked, (1 - pi) / 0.7, atol=1e-6)  # d/dz log softmax(z/T)_y


def test_clipped_ratio_on_policy_equals_the_plain_loss():
    logprobs, mask, advantages = hand_batch()
    logprobs = logprobs.clone().requires_grad_(True)
    plain, _ = masked_pg_loss(logprobs, mask, advantages)
    (plain_grad,) = torch.autograd.grad(plain, logprobs)
    clipped, metrics = PolicyLoss(SeqMean(), ClippedRatio(0.2))(
        logprobs, mask, advantages, logprobs.detach()
    )
    (clipped_grad,) = torch.autograd.grad(clipped, logprobs)
    # the ratio is 1: the surrogate is A (not A log pi) but its gradient is the same
    assert torch.allclose(clipped_grad, plain_grad)
    assert metrics["actor/pg_clipfrac"].item() == 0


def test_clipped_ratio_and_truncated_weights_by_hand():
    logprobs = torch.log(torch.tensor([[0.6]])).requires_grad_(True)
    behaviour = torch.log(torch.tensor([[0.4]]))
    mask, advantages = torch.tensor([[True]]), torch.tensor([1.0])
    clipped, metrics = PolicyLoss(SeqMean(), ClippedRatio(0.2))(
        logprobs, mask, advantages, behaviour
    )
    assert clipped.item() == pytest.approx(-1.2)  # ratio 1.5 clipped to 1.2
    assert metrics["actor/pg_clipfrac"].item() == 1
    (grad,) = torch.autograd.grad(clipped, logprobs)
    assert grad.item() == 0
    truncated, metrics = PolicyLoss(SeqMean(), TruncatedImportance(1.2))(
        logprobs, mask, advantages, behaviour
    )
    assert truncated.item() == pytest.approx(-1.2 * math.log(0.6))  # min(1.5, C) A log pi
    assert metrics["actor/is_weight/mean"].item() == pytest.approx(1.2)
    (grad,) = torch.autograd.grad(truncated, logprobs)
    assert grad.item() == pytest.approx(-1.2)


def test_micro_batches_with_the_batch_denominator_add_up_to_the_batch_loss():
    logprobs, mask, advantages = hand_batch()
    for aggregation in (SeqMean(), TokenMean(), ConstantNorm(8)):
        loss_fn = PolicyLoss(aggregation)
        whole, _ = loss_fn(logprobs, mask, advantages)
        denominator = aggregation.denominator(mask.float())
        parts = [
            loss_fn(logprobs[rows], mask[rows], advantages[rows], denominator=denominator)[0]
            for rows in (slice(0, 1), slice(1, 3), slice(3, 4))
        ]
        assert sum(p.item() for p in parts) == pytest.approx(whole.item(), rel=1e-6)


def test_build_loss_picks_the_variant_once():
    assert build_loss(LossSettings()) == PolicyLoss(SeqMean(), PolicyGradient())
    assert build_loss(LossSettings(aggregation="token-mean", clip_eps=0.2)) == PolicyLoss(
        TokenMean(), ClippedRatio(0.2)
    )
    assert build_loss(LossSettings(aggregation="dr-grpo", is_cap=2.0)) == PolicyLoss(
        ConstantNorm(4096), TruncatedImportance(2.0)
    )


def test_gradient_signal_by_hand():
    logprobs, mask, advantages = hand_batch()
    signal = gradient_signal(logprobs, mask, advantages).tolist()
    # row 0: (1/3) * mean(0.5, 0.75, 0.5); row 1: (0.5/2) * mean(0.5, 0.875)
    assert signal == pytest.approx([(1 / 3) * (1.75 / 3), 0.25 * (1.375 / 2), 0.0, 0.0])


def test_config_errors_name_the_key():
    with pytest.raises(
        ConfigError, match=f"^{re.escape('set at most one of loss.clip_eps and loss.is_cap')}$"
    ):
        LearnerConfig(loss=LossSettings(clip_eps=0.2, is_cap=2.0))
    message = "prompts_per_step (10) must be a multiple of prompts_per_minibatch (8)"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        LearnerConfig(prompts_per_step=10)
    message = "stale=reweight needs loss.is_cap (the truncation C), e.g. 2.0"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        LearnerConfig(stale="reweight", max_lag=1)
