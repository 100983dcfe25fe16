"""Log-probabilities of a group whose rollouts share a prefix, with the prefix run once.

A reset group's M rollouts (and a base group's, which share the prompt) start with the same
``P`` tokens. The naive forward runs those tokens M times; here they run once, their keys and
values are repeated over the M rollouts, and the suffixes run on top of that cache. Nothing is
detached: the suffix losses reach the adapter through the prefix's keys and values exactly as
in the naive forward, so loss and gradients agree with it up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from thoughtmdp.learners.model.policy import (
    TokenScores,
    gather_logprobs,
    output_cache,
    pad_front,
    token_entropy,
)


def shared_prefix_logits(
    model: Callable[..., Any], input_ids: Tensor, prefix_length: int, cache_argument: str = "cache"
) -> Tensor:
    """Logits that predict a group's suffix tokens, the shared prefix run once.

    Args:
        model: The policy (or a DeepSpeed engine around it).
        input_ids: The group's rows, right-padded; the first ``prefix_length`` columns are
            equal.  # (M, T)
        prefix_length: ``P``, tokens shared by every row (at least 1, less than ``T``).
        cache_argument: Name of the model's KV-cache keyword (see ``model.cache_argument``).

    Returns:
        Logits predicting ``input_ids[:, P:]``.  # (M, T - P, V)
    """
    rows = input_ids.shape[0]
    prefix = input_ids[:1, :prefix_length]  # (1, P)
    first = model(input_ids=prefix, use_cache=True, logits_to_keep=1)
    cache = output_cache(first)
    cache.batch_repeat_interleave(rows)  # (1, ...) -> (M, ...): copies keep the graph
    suffix = input_ids[:, prefix_length:]  # (M, S)
    # no attention mask, as in ``token_logprobs``: right padding is invisible to real tokens
    rest = model(input_ids=suffix, use_cache=True, **{cache_argument: cache})
    first_logits = first.logits[:, -1:].expand(rows, -1, -1)  # (M, 1, V) predicts suffix[:, 0]
    return torch.cat([first_logits, rest.logits[:, :-1]], dim=1)  # (M, S, V)


def shared_prefix_logprobs(
    model: Callable[..., Any],
    input_ids: Tensor,
    prefix_length: int,
    temperature: float,
    cache_argument: str = "cache",
) -> Tensor:
    """``log pi(x_t | x_<t)`` of a group's tokens, the shared prefix computed once.

    Args:
        model: The policy (or a DeepSpeed engine around it).
        input_ids: The group's rows, right-padded; the first ``prefix_length`` columns are
            equal.  # (M, T)
        prefix_length: ``P``, tokens shared by every row (at least 1, less than ``T``).
        temperature: The sampling temperature.
        cache_argument: Name of the model's KV-cache keyword (see ``model.cache_argument``).

    Returns:
        Log-probabilities aligned with ``input_ids``; the first ``P`` columns are 0.  # (M, T)
    """
    logits = shared_prefix_logits(model, input_ids, prefix_length, cache_argument)
    logprobs = gather_logprobs(logits, input_ids[:, prefix_length:], temperature)  # (M, S)
    return pad_front(logprobs, prefix_length)  # (M, T)


def shared_prefix_scores(
    model: Callable[..., Any],
    input_ids: Tensor,
    prefix_length: int,
    temperature: float,
    cache_argument: str = "cache",
) -> TokenScores:
    """As :func:`shared_prefix_logprobs`, with each scored position's entropy besides.

    Returns:
        Log-probabilities and entropies; the first ``P`` columns are 0.
    """
    logits = shared_prefix_logits(model, input_ids, prefix_length, cache_argument)
    logprobs = gather_logprobs(logits, input_ids[:, prefix_length:], temperature)  # (M, S)
    entropy = token_entropy(logits, temperature)  # (M, S)
    return TokenScores(pad_front(logprobs, prefix_length), pad_front(entropy, prefix_length))
