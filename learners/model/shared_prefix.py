"""Log-probabilities of a group whose rollouts share a prefix, with the prefix run once.

A reset group's M rollouts (and a base group's, which share the prompt) start with the same
``P`` tokens. The naive forward runs those tokens M times; here they run once, their keys and
values are repeated over the M rollouts, and the suffixes run on top of that cache. Nothing is
detached: the suffix losses reach the adapter through the prefix's keys and values exactly as
in the naive forward, so loss and gradients agree with it up to float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.learners.model.policy import (
    TokenScores,
    pad_front,
    policy_module,
    scored_forward,
    shifted_targets,
)


def prefix_cache() -> Any:
    """An empty KV cache that stops growing once :func:`freeze` is called on it.

    After the prefix pass, the suffix pass only reads the prefix's keys and values: each
    layer gets ``cat(prefix, suffix)`` back and nothing is stored. A pass that reads the cache
    without writing it can be recomputed, so gradient checkpointing may keep it (the layers'
    replay in backward sees the same prefix).
    """
    from transformers import DynamicCache

    class PrefixCache(DynamicCache):
        frozen = False

        def update(self, key_states: Tensor, value_states: Tensor, layer_idx: int, *args, **kw):
            if not self.frozen:
                return super().update(key_states, value_states, layer_idx, *args, **kw)
            layer: Any = self.layers[layer_idx]
            return (
                torch.cat([layer.keys, key_states], dim=-2),
                torch.cat([layer.values, value_states], dim=-2),
            )

    return PrefixCache()


def freeze(cache: Any, rows: int) -> None:
    """Repeat the prefix cache over ``rows`` rollouts and make it read-only."""
    cache.batch_repeat_interleave(rows)  # (1, ...) -> (M, ...): copies keep the graph
    cache.frozen = True


def checkpointed_layers(module: nn.Module) -> list[Any]:
    """The layers of ``module`` that transformers runs under gradient checkpointing now."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [
        m
        for m in module.modules()
        if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing
    ]


@contextlib.contextmanager
def without_checkpointing(layers: list[Any]) -> Iterator[None]:
    """``layers`` run normally inside: the prefix pass writes its cache, which a replay cannot."""
    for layer in layers:
        layer.gradient_checkpointing = False
    try:
        yield
    finally:
        for layer in layers:
            layer.gradient_checkpointing = True


@contextlib.contextmanager
def reading_cache(layers: list[Any]) -> Iterator[None]:
    """Checkpointed ``layers`` keep the (frozen, read-only) cache inside instead of dropping it.

    Raises:
        ThoughtMDPError: If this transformers drops the cache of every checkpointed layer
            (the suffixes would be scored without their prefix).
    """
    if layers and not hasattr(type(layers[0]), "_can_checkpoint_with_cache"):
        raise ThoughtMDPError(
            "shared_prefix with gradient_checkpointing needs a transformers whose checkpointed "
            "layers can keep a KV cache (_can_checkpoint_with_cache); upgrade transformers or "
            "set gradient_checkpointing=false"
        )
    for layer in layers:
        layer._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for layer in layers:
            del layer._can_checkpoint_with_cache


def shared_prefix_scores(
    model: Callable[..., Any],
    input_ids: Tensor,
    prefix_length: int,
    temperature: float,
    cache_argument: str = "cache",
) -> TokenScores:
    """Log-probabilities and entropies of a group's suffix tokens, the shared prefix run once.

    The prefix pass runs without gradient checkpointing (one row of ``P`` tokens); the suffix
    pass keeps it, reading the prefix's keys and values from a frozen cache.

    Args:
        model: The policy (or an engine around it).
        input_ids: The group's rows, right-padded; the first ``prefix_length`` columns are
            equal.  # (M, T)
        prefix_length: ``P``, tokens shared by every row (at least 1, less than ``T``).
        temperature: The sampling temperature.
        cache_argument: Name of the model's KV-cache keyword (see ``model.cache_argument``).

    Returns:
        Log-probabilities and entropies aligned with ``input_ids``; the first ``P`` columns
        are 0.
    """
    rows = input_ids.shape[0]
    layers = checkpointed_layers(policy_module(model))
    cache = prefix_cache()
    suffix = input_ids[:, prefix_length:]  # (M, S)
    with without_checkpointing(layers):  # the last prefix position predicts suffix[:, 0]
        first, _ = scored_forward(
            model,
            suffix[:, :1],
            temperature,
            input_ids=input_ids[:1, :prefix_length],
            use_cache=True,
            logits_to_keep=1,
            **{cache_argument: cache},
        )
    freeze(cache, rows)
    # no attention mask, as in ``token_scores``: right padding is invisible to real tokens
    with reading_cache(layers):
        rest, _ = scored_forward(
            model,
            shifted_targets(suffix),
            temperature,
            input_ids=suffix,
            use_cache=True,
            **{cache_argument: cache},
        )
    logprobs = torch.cat([first.logprobs, rest.logprobs[:, :-1]], dim=1)  # (M, S)
    entropy = torch.cat([first.entropy, rest.entropy[:, :-1]], dim=1)
    return TokenScores(pad_front(logprobs, prefix_length), pad_front(entropy, prefix_length))


def shared_prefix_logprobs(
    model: Callable[..., Any],
    input_ids: Tensor,
    prefix_length: int,
    temperature: float,
    cache_argument: str = "cache",
) -> Tensor:
    """``log pi(x_t | x_<t)`` of a group's tokens, the shared prefix computed once.

    As :func:`shared_prefix_scores`, without the entropies.

    Returns:
        Log-probabilities aligned with ``input_ids``; the first ``P`` columns are 0.  # (M, T)
    """
    return shared_prefix_scores(
        model, input_ids, prefix_length, temperature, cache_argument
    ).logprobs
