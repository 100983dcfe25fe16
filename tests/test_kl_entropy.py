"""Policy entropy, the behaviour-policy KL and the KL-to-base penalty, against hand values."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch
from test_learner import config, hand_episode

from thoughtmdp.episodes.arrays import training_arrays
from thoughtmdp.errors import ConfigError, ThoughtMDPError
from thoughtmdp.learners import LearnerConfig, LossSettings, build_trainer
from thoughtmdp.learners.loss import (
    ClippedRatio,
    PolicyLoss,
    SeqMean,
    TokenMean,
    TruncatedImportance,
    behaviour_kl,
    build_loss,
    low_var_kl,
)
from thoughtmdp.learners.model import policy
from thoughtmdp.learners.model.policy import base_policy, token_entropy, token_logprobs

LN2 = math.log(2)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


# -- entropy ----------------------------------------------------------------------------------


def test_entropy_of_known_rows_at_the_sampling_temperature():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.1]]]))  # (1, 2, 3)
    assert token_entropy(logits, 1.0)[0].tolist() == pytest.approx([1.5 * LN2, math.log(3)])
    # T = 1/2 squares the probabilities: (2/3, 1/6, 1/6)
    expected = (2 / 3) * math.log(3 / 2) + (1 / 3) * math.log(6)
    assert token_entropy(logits, 0.5)[0, 0].item() == pytest.approx(expected, rel=1e-6)


def test_entropy_is_chunked_and_carries_no_gradient(monkeypatch):
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11, requires_grad=True)
    whole = token_entropy(logits, 0.7)
    monkeypatch.setattr(policy, "ENTROPY_CHUNK_ELEMENTS", 22)  # two positions per chunk
    chunked = token_entropy(logits[:, :-1], 0.7)  # a non-contiguous view, as the trainer passes
    probs = torch.softmax(logits.detach() / 0.7, -1)
    direct = -(probs * probs.log()).sum(-1)
    assert torch.allclose(whole, direct, atol=1e-6)
    assert torch.equal(chunked, whole[:, :-1])
    assert not whole.requires_grad


# -- the behaviour-policy KL ------------------------------------------------------------------


def test_ppo_kl_is_behaviour_minus_current_on_active_tokens():
    current = torch.log(torch.tensor([[0.25, 0.5, 0.9], [0.125, 0.5, 0.5]]))
    behaviour = torch.log(torch.tensor([[0.5, 0.5, 0.1], [0.25, 0.5, 0.5]]))
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # the 0.9 vs 0.1 token is masked
    sums = behaviour_kl(current, behaviour, mask)
    # k1 = log mu - log pi: ln 2, 0, ln 2; k3 = r - log r - 1 with r = 1/2, 1, 1/2
    assert sums["actor/ppo_kl"].item() == pytest.approx(2 * LN2, rel=1e-6)
    assert sums["actor/mismatch_kl"].item() == pytest.approx(2 * (LN2 - 0.5), rel=1e-6)
    # PolicyLoss reports the same sums whenever behaviour log-probabilities are given
    _, metrics = PolicyLoss()(current, mask.bool(), torch.ones(2), behaviour)
    assert metrics["actor/ppo_kl"].item() == pytest.approx(2 * LN2, rel=1e-6)
    _, metrics = PolicyLoss()(current, mask.bool(), torch.ones(2))
    assert "actor/ppo_kl" not in metrics


# -- the k3 penalty towards the reference -----------------------------------------------------


def penalty_batch():
    """Two rollouts: r = pi_ref/pi is 1/2 and 1 on row 0, 2 on row 1 (its 2nd token masked)."""
    logprobs = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.3]])).requires_grad_()
    reference = torch.log(torch.tensor([[0.25, 0.25], [1.0, 0.9]]))
    mask = torch.tensor([[True, True], [True, False]])
    return logprobs, reference, mask


def test_low_var_kl_by_hand():
    logprobs, reference, _ = penalty_batch()
    k3 = low_var_kl(logprobs, reference)
    assert k3[0].tolist() == pytest.approx([LN2 - 0.5, 0.0], abs=1e-7)
    assert k3[1, 0].item() == pytest.approx(1 - LN2, rel=1e-6)


@pytest.mark.parametrize(
    ("aggregation", "expected_kl"),
    [
        # ((ln2 - 1/2 + 0) / 2 + (1 - ln2) / 1) / 2 rollouts
        (SeqMean(), ((LN2 - 0.5) / 2 + 1 - LN2) / 2),
        # (ln2 - 1/2 + 0 + 1 - ln2) / 3 tokens
        (TokenMean(), 0.5 / 3),
    ],
)
def test_kl_penalty_value_joins_the_loss_aggregated_as_the_policy_loss(aggregation, expected_kl):
    logprobs, reference, mask = penalty_batch()
    advantages = torch.tensor([1.0, -1.0])
    plain, plain_metrics = PolicyLoss(aggregation)(logprobs, mask, advantages)
    loss, metrics = PolicyLoss(aggregation, kl_coef=0.5)(
        logprobs, mask, advantages, reference_logprobs=reference
    )
    assert metrics["actor/kl_loss"].item() == pytest.approx(expected_kl, rel=1e-6)
    assert metrics["actor/pg_loss"] == plain_metrics["actor/pg_loss"]  # the pg part alone
    assert loss.item() == pytest.approx(plain.item() + 0.5 * expected_kl, rel=1e-6)


def test_kl_penalty_gradient_pulls_each_token_towards_the_reference():
    logprobs, reference, mask = penalty_batch()
    loss, _ = PolicyLoss(SeqMean(), kl_coef=0.5)(
        logprobs, mask, torch.zeros(2), reference_logprobs=reference
    )
    loss.backward()
    # d k3 / d log pi = 1 - r; seq-mean weight 1/(T_i B); beta = 1/2
    grad = logprobs.grad
    assert grad[0, 0].item() == pytest.approx(0.5 * (1 / 4) * 0.5)  # pi > ref: lower log pi
    assert grad[0, 1].item() == 0.0  # pi = ref
    assert grad[1, 0].item() == pytest.approx(0.5 * (1 / 2) * -1.0)  # pi < ref: raise log pi
    assert grad[1, 1].item() == 0.0  # masked


def test_kl_penalty_needs_reference_logprobs():
    logprobs, _, mask = penalty_batch()
    with pytest.raises(ValueError, match="needs reference_logprobs"):
        PolicyLoss(kl_coef=0.1)(logprobs, mask, torch.ones(2))


@pytest.mark.parametrize(
    "surrogate", [None, ClippedRatio(0.2), TruncatedImportance(2.0)], ids=["pg", "clip", "is"]
)
def test_kl_coef_zero_leaves_loss_and_gradients_exactly_as_before(surrogate):
    logprobs, reference, mask = penalty_batch()
    behaviour = torch.log(torch.tensor([[0.4, 0.3], [0.6, 0.3]]))
    advantages = torch.tensor([1.0, -0.5])
    loss = PolicyLoss() if surrogate is None else PolicyLoss(surrogate=surrogate)
    assert build_loss(LossSettings()).kl_coef == 0.0
    got, _ = loss(logprobs, mask, advantages, behaviour, reference_logprobs=reference)
    (got_grad,) = torch.autograd.grad(got, logprobs)
    # the loss as it was written before the penalty existed
    weights, m = loss.aggregation.row_weights(mask.float()), mask.float()
    terms, _ = loss.surrogate(logprobs, behaviour, advantages, m)
    before = (-weights * (terms * m).sum(-1)).sum() / loss.aggregation.denominator(m)
    (before_grad,) = torch.autograd.grad(before, logprobs)
    assert torch.equal(got, before) and torch.equal(got_grad, before_grad)


def test_kl_coef_is_validated_with_its_key():
    message = "loss.kl_coef: expected 0 or more, got -0.1"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        LearnerConfig(loss=LossSettings(kl_coef=-0.1))
    assert LearnerConfig().loss.kl_coef == 0.0


# -- on the tiny model ------------------------------------------------------------------------


def with_behaviour(episode, arrays, logprobs, shift):
    """``episode`` whose sampled tokens carry ``logprobs + shift`` as behaviour log-probs."""
    rows = iter(range(arrays.input_ids.shape[0]))

    def rollout(trajectory):
        row = next(rows)
        values = iter(logprobs[row][arrays.loss_mask[row]].tolist())
        thoughts = tuple(
            dataclasses.replace(t, logprobs=tuple(next(values) + shift for _ in t.token_ids))
            for t in trajectory.thoughts
        )
        return dataclasses.replace(trajectory, thoughts=thoughts)

    groups = tuple(
        dataclasses.replace(g, trajectories=tuple(rollout(t) for t in g.trajectories))
        for g in episode.groups
    )
    return dataclasses.replace(episode, groups=groups)


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_a_learner_step_logs_entropy_and_the_behaviour_kl(tiny_model_dir, tokenizer, shared_prefix):
    loss = LossSettings(temperature=0.7)  # entropy and log-probs both of softmax(logits / T)
    trainer = build_trainer(config(tiny_model_dir, shared_prefix=shared_prefix, loss=loss))
    plain = [hand_episode(tokenizer, f"train/{i}") for i in range(2)]
    arrays = training_arrays(plain, trainer.pad_id)
    ids, mask = torch.from_numpy(arrays.input_ids), torch.from_numpy(arrays.loss_mask)
    with torch.no_grad():  # the policy before the step (one mini-batch: the step sees it)
        logprobs = token_logprobs(trainer.engine.model, ids, 0.7).numpy()
        probs = torch.softmax(trainer.engine.model(input_ids=ids).logits.float() / 0.7, -1)
    entropy = -(probs * probs.log()).sum(-1)  # (B, T): position t predicts token t + 1
    expected_entropy = entropy[:, :-1][mask[:, 1:]].mean().item()  # every rollout has A != 0
    episodes = [
        with_behaviour(e, training_arrays([e], trainer.pad_id), _rows(logprobs, arrays, i), 0.1)
        for i, e in enumerate(plain)
    ]
    metrics = trainer.step(trainer.pad(episodes))
    assert metrics["actor/entropy"] == pytest.approx(expected_entropy, rel=1e-4)
    # behaviour = current + 0.1 on every token: k1 = 0.1, k3 = e^-0.1 + 0.1 - 1
    assert metrics["actor/ppo_kl"] == pytest.approx(0.1, abs=1e-5)
    assert metrics["actor/mismatch_kl"] == pytest.approx(math.exp(-0.1) - 0.9, abs=1e-5)
    assert "actor/kl_loss" not in metrics and "actor/kl_coef" not in metrics
    # without behaviour log-probabilities (a scripted backend) there is no KL to report
    metrics = trainer.step(trainer.pad(plain))
    assert "actor/ppo_kl" not in metrics and metrics["actor/entropy"] > 0


def _rows(logprobs, arrays, episode_index):
    """The rows of one hand episode (four rollouts each) cut to that episode's width."""
    rows = logprobs[4 * episode_index : 4 * episode_index + 4]
    width = int(arrays.attention_mask[4 * episode_index : 4 * episode_index + 4].sum(1).max())
    return rows[:, :width]


def test_kl_coef_zero_runs_no_reference_forward(tiny_model_dir, tokenizer, monkeypatch):
    def forbidden(model):
        raise AssertionError("reference forward with kl_coef=0")

    monkeypatch.setattr("thoughtmdp.learners.trainer.base_policy", forbidden)
    trainer = build_trainer(config(tiny_model_dir))
    trainer.step(trainer.pad([hand_episode(tokenizer, f"train/{i}") for i in range(2)]))


def test_base_policy_switches_the_adapter_off_and_back_on(tiny_model_dir):
    trainer = build_trainer(config(tiny_model_dir))
    model, ids = trainer.engine.model, torch.randint(1, 400, (2, 9))
    with torch.no_grad():
        base = token_logprobs(model, ids, 0.7)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
        tuned = token_logprobs(model, ids, 0.7)
    with base_policy(model):
        off = token_logprobs(model, ids, 0.7)
        assert not off.requires_grad
    assert torch.equal(off, base) and not torch.allclose(tuned, base)
    assert torch.equal(token_logprobs(model, ids, 0.7).detach(), tuned)
    message = "loss.kl_coef needs a PEFT model (its base model is the reference), got Linear; "
    with pytest.raises(ThoughtMDPError, match=f"^{re.escape(message)}set loss.kl_coef=0$"):
        base_policy(torch.nn.Linear(2, 2)).__enter__()


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_kl_penalty_step_on_the_tiny_model(tiny_model_dir, tokenizer, shared_prefix):
    loss = LossSettings(temperature=1.0, kl_coef=0.5)
    trainer = build_trainer(config(tiny_model_dir, shared_prefix=shared_prefix, loss=loss))
    episodes = [hand_episode(tokenizer, f"train/{i}") for i in range(2)]
    first = trainer.step(trainer.pad(episodes))
    assert first["actor/kl_loss"] == 0.0  # the fresh adapter (B = 0) is the base model
    assert first["actor/kl_coef"] == 0.5
    second = trainer.step(trainer.pad(episodes))
    assert second["actor/kl_loss"] > 0
    # a rollout with A = 0 still runs: its penalty has a gradient
    tied = [_zero_advantages(e) for e in episodes]
    assert trainer.step(trainer.pad(tied))["actor/grad_norm"] > 0
    plain = build_trainer(config(tiny_model_dir, shared_prefix=shared_prefix))
    plain.step(plain.pad(episodes))
    assert plain.step(plain.pad(tied))["actor/grad_norm"] == 0.0


def _zero_advantages(episode):
    groups = tuple(
        dataclasses.replace(g, advantages=(0.0,) * len(g.trajectories)) for g in episode.groups
    )
    return dataclasses.replace(episode, groups=groups)


def test_kl_penalty_agrees_between_naive_and_shared_prefix_forwards(tiny_model_dir, tokenizer):
    episodes = [hand_episode(tokenizer, f"train/{i}") for i in range(2)]
    results = []
    for shared in (False, True):
        loss = LossSettings(temperature=1.0, kl_coef=0.5)
        trainer = build_trainer(config(tiny_model_dir, shared_prefix=shared, loss=loss))
        results.append([trainer.step(trainer.pad(episodes)) for _ in range(3)])
    for naive, shared in zip(*results, strict=True):
        for key in ("actor/kl_loss", "actor/pg_loss", "actor/entropy"):
            assert naive[key] == pytest.approx(shared[key], rel=1e-4, abs=1e-7), key
