"""Token scores without full-vocabulary logits, and gradient checkpointing, on the tiny model."""

from __future__ import annotations

import pytest
import torch
from test_learner import config

from thoughtmdp.learners import build_trainer
from thoughtmdp.learners.model import policy
from thoughtmdp.learners.model.policy import (
    ChunkedHeadScores,
    cache_argument,
    gather_logprobs,
    token_entropy,
    token_scores,
)
from thoughtmdp.learners.model.shared_prefix import shared_prefix_scores

PREFIX, ROWS = 12, 4


def test_chunked_head_gradients_match_autograd_in_float64():
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (2, 5))
    assert torch.autograd.gradcheck(
        lambda h, w: ChunkedHeadScores.apply(h, w, targets, 0.7, 3)[0], (hidden, weight)
    )
    logprobs, entropy = ChunkedHeadScores.apply(hidden, weight, targets, 0.7, 3)
    logits = (hidden @ weight.T).detach()
    assert torch.allclose(logprobs, gather_logprobs(logits, targets, 0.7).double())
    assert torch.allclose(entropy, token_entropy(logits, 0.7).double(), atol=1e-6)
    assert not entropy.requires_grad


@pytest.fixture(scope="module")
def policy_with_adapter(tiny_model_dir):
    """The tiny policy with a non-zero adapter, so gradients reach both LoRA matrices."""

    def build(**changes):
        model = build_trainer(config(tiny_model_dir, **changes)).engine.model
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
        return model

    return build


def group_ids():
    generator = torch.Generator().manual_seed(0)
    prefix = torch.randint(1, 400, (1, PREFIX), generator=generator).expand(ROWS, -1)
    return torch.cat([prefix, torch.randint(1, 400, (ROWS, 9), generator=generator)], 1)


def scores_and_grads(model, forward):
    model.zero_grad()
    scores = forward()
    (scores.logprobs[:, PREFIX:].sum() + 0 * scores.entropy.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return scores.logprobs.detach(), scores.entropy, grads


def full_logits_scores(model, ids):
    """The reference: full-vocabulary logits, log-softmax and entropy over all of them."""
    logits = model(input_ids=ids).logits[:, PREFIX - 1 : -1]
    logprobs = gather_logprobs(logits, ids[:, PREFIX:], 0.7)
    return policy.TokenScores(
        policy.pad_front(logprobs, PREFIX),
        policy.pad_front(token_entropy(logits.detach(), 0.7), PREFIX),
    )


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [("float32", 1e-5), ("bfloat16", 2e-2)], ids=["fp32", "bf16"]
)
def test_chunked_scores_equal_full_logits_with_gradients(
    policy_with_adapter, monkeypatch, dtype, tolerance
):
    model, ids = policy_with_adapter(dtype=dtype), group_ids()
    reference = scores_and_grads(model, lambda: full_logits_scores(model, ids))
    vocab = model.get_output_embeddings().out_features
    monkeypatch.setattr(policy, "LOGIT_CHUNK_ELEMENTS", 3 * vocab)  # 3 positions a chunk
    chunked = scores_and_grads(model, lambda: token_scores(model, ids, 0.7, PREFIX))
    shared = scores_and_grads(
        model, lambda: shared_prefix_scores(model, ids, PREFIX, 0.7, cache_argument(model))
    )
    for got in (chunked, shared):
        assert torch.allclose(got[0], reference[0], atol=tolerance)
        assert torch.allclose(got[1], reference[1], atol=tolerance)
        for name, grad in reference[2].items():
            scale = grad.abs().max()
            assert torch.allclose(got[2][name], grad, atol=tolerance * scale), name


def test_gradient_checkpointing_gives_equal_gradients_with_a_shared_prefix(policy_with_adapter):
    plain, checkpointed = policy_with_adapter(), policy_with_adapter(gradient_checkpointing=True)
    layers = [m for m in checkpointed.modules() if getattr(m, "gradient_checkpointing", False)]
    assert layers and all(m.training for m in layers)  # checkpointing is really on
    ids = group_ids()
    for forward in (
        lambda m: token_scores(m, ids, 0.7, PREFIX),
        lambda m: shared_prefix_scores(m, ids, PREFIX, 0.7, cache_argument(m)),
    ):
        expected = scores_and_grads(plain, lambda f=forward: f(plain))
        got = scores_and_grads(checkpointed, lambda f=forward: f(checkpointed))
        assert torch.allclose(got[0], expected[0], atol=1e-5)
        for name, grad in expected[2].items():
            assert torch.allclose(got[2][name], grad, atol=1e-6, rtol=1e-4), name
    assert all(m.gradient_checkpointing for m in layers)  # switched back on after the prefix
