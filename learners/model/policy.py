"""The trainable policy: a Hugging Face causal LM with a PEFT LoRA adapter, and its log-probs.

Temperature: the actors sample from ``softmax(logits / T)`` (then top-p) and report
``log_softmax(logits / T)`` as behaviour log-probabilities, so the learner divides the logits
by the same ``T`` (``loss.temperature``, 0.7 by default) before the log-softmax. Its ``pi`` is
then the distribution the tokens came from, up to top-p truncation, which is not reproduced:
a token outside the nucleus could not have been sampled, so the difference is confined to
the renormalisation of the nucleus (``mu >= pi`` on sampled tokens). The entropy the learner
logs is that of the same ``softmax(logits / T)``, over the full vocabulary.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.learner import LearnerConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Logits elements per chunk of the entropy (64 MiB of float32 per temporary).
ENTROPY_CHUNK_ELEMENTS = 2**24


class TokenScores(NamedTuple):
    """What the learner reads off one forward pass, aligned with ``input_ids``.

    Columns before the first scored one (a shared prompt or prefix) are 0 in both.

    Attributes:
        logprobs: ``log pi(x_t | x_<t)``, with gradient.  # (B, T) float32
        entropy: ``H(pi(. | x_<t))`` over the full vocabulary, without gradient.  # (B, T)
    """

    logprobs: Tensor
    entropy: Tensor


def load_policy(config: LearnerConfig) -> nn.Module:
    """The base model from ``config.model`` with a fresh LoRA adapter; only the adapter trains.

    Args:
        config: Learner settings (``model``, ``lora``, ``dtype``, ``seed``).

    Returns:
        A ``peft.PeftModel`` in training mode, on the CPU.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(config.model, dtype=DTYPES[config.dtype])
    lora = LoraConfig(
        r=config.lora.rank,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the adapter's initialisation is reproducible
        model = get_peft_model(base, lora)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    model.train()
    return model


@contextlib.contextmanager
def base_policy(model: nn.Module) -> Iterator[None]:
    """Forward passes inside run the frozen base model (the adapter off), without gradient.

    The reference policy of ``loss.kl_coef`` is the base model itself: PEFT's
    ``disable_adapter`` bypasses the LoRA layers, so no second copy of the weights is held.
    Forward through the engine as usual (under ZeRO-3, DeepSpeed still gathers the base
    weights); the adapter is back on when the block ends.

    Args:
        model: The PEFT policy (``engine.model``).

    Raises:
        ThoughtMDPError: If ``model`` has no adapter to switch off.
    """
    disable = getattr(model, "disable_adapter", None)
    if disable is None:
        raise ThoughtMDPError(
            f"loss.kl_coef needs a PEFT model (its base model is the reference), "
            f"got {type(model).__name__}; set loss.kl_coef=0"
        )
    with disable(), torch.no_grad():
        yield


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable (adapter) parameters by name."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def gather_logprobs(logits: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """``log softmax(logits / T)`` at the target ids.

    Args:
        logits: Next-token logits.  # (B, S, V)
        targets: Token ids the logits predict.  # (B, S)
        temperature: The sampling temperature ``T``.

    Returns:
        Log-probabilities of the targets, float32.  # (B, S)
    """
    scaled = logits.float() / temperature  # (B, S, V)
    picked = scaled.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, S)
    return picked - torch.logsumexp(scaled, dim=-1)


@torch.no_grad()
def token_entropy(logits: Tensor, temperature: float) -> Tensor:
    """Entropy of ``softmax(logits / T)`` at every position, without gradient.

    Computed a chunk of positions at a time (``logsumexp(z) - sum softmax(z) z``, as verl's
    ``entropy_from_logits``), so the extra memory is a few ``chunk x V`` temporaries, never
    another ``(B, S, V)`` tensor.

    Args:
        logits: Next-token logits.  # (B, S, V)
        temperature: The sampling temperature ``T``.

    Returns:
        Entropies in nats, float32.  # (B, S)

    >>> logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [1.0, 1.0, 1.0]]]))
    >>> [round(h, 4) for h in token_entropy(logits, 1.0)[0].tolist()]  # 1.5 ln 2, ln 3
    [1.0397, 1.0986]
    """
    batch, positions, vocab = logits.shape
    entropy = torch.empty(batch, positions, dtype=torch.float32, device=logits.device)
    step = max(1, ENTROPY_CHUNK_ELEMENTS // vocab)
    for b in range(batch):  # row by row: a slice of a row is a view, a reshape may copy
        for start in range(0, positions, step):
            scaled = logits[b, start : start + step].float() / temperature  # (c, V)
            expected = (torch.softmax(scaled, dim=-1) * scaled).sum(-1)  # (c,)
            entropy[b, start : start + step] = torch.logsumexp(scaled, dim=-1) - expected
    return entropy


def next_token_logits(model: Callable[..., Any], input_ids: Tensor, first_target: int) -> Tensor:
    """Logits that predict ``input_ids[:, first_target:]``, from one forward pass.

    Rows must be right-padded (as ``training_arrays`` pads them). No attention mask is
    passed: under causal attention a real token only sees earlier positions, all real, so
    padding changes nothing but the padded positions' own outputs, which carry no loss; and
    transformers' masked attention path is several times slower on CPU, backward included.
    Logits are computed only from position ``first_target - 1`` on: the tokens before
    ``first_target`` (a shared prompt or prefix) carry no loss.

    Args:
        model: The policy (or a DeepSpeed engine around it).
        input_ids: Token ids, right-padded.  # (B, T)
        first_target: First column to predict (at least 1).

    Returns:
        Logits (a view of the model's output).  # (B, T - first_target, V)
    """
    keep = input_ids.shape[1] - first_target + 1  # logits of positions first_target-1 .. T-1
    return model(input_ids=input_ids, logits_to_keep=keep).logits[:, :-1]


def pad_front(values: Tensor, columns: int) -> Tensor:
    """``values`` with ``columns`` zero columns in front (the unscored prompt or prefix)."""
    return torch.cat([values.new_zeros(values.shape[0], columns), values], dim=1)


def token_scores(
    model: Callable[..., Any], input_ids: Tensor, temperature: float, first_target: int = 1
) -> TokenScores:
    """Log-probabilities and entropies of every token from one forward pass.

    As :func:`token_logprobs`, with the entropy of each scored position besides.

    Args:
        model: The policy (or a DeepSpeed engine around it).
        input_ids: Token ids, right-padded.  # (B, T)
        temperature: The sampling temperature.
        first_target: First column scored (at least 1).

    Returns:
        Log-probabilities and entropies; columns before ``first_target`` are 0.
    """
    logits = next_token_logits(model, input_ids, first_target)  # (B, S, V)
    logprobs = gather_logprobs(logits, input_ids[:, first_target:], temperature)  # (B, S)
    entropy = token_entropy(logits, temperature)  # (B, S)
    return TokenScores(pad_front(logprobs, first_target), pad_front(entropy, first_target))


def token_logprobs(
    model: Callable[..., Any], input_ids: Tensor, temperature: float, first_target: int = 1
) -> Tensor:
    """``log pi(x_t | x_<t)`` of every token, aligned with ``input_ids`` (column 0 is 0).

    One forward pass as :func:`next_token_logits` describes (right padding, no mask, logits
    from ``first_target - 1`` on).

    Args:
        model: The policy (or a DeepSpeed engine around it).
        input_ids: Token ids, right-padded.  # (B, T)
        temperature: The sampling temperature.
        first_target: First column whose log-probability is needed (at least 1).

    Returns:
        Log-probabilities; columns before ``first_target`` are 0.  # (B, T)
    """
    logits = next_token_logits(model, input_ids, first_target)  # (B, S, V)
    logprobs = gather_logprobs(logits, input_ids[:, first_target:], temperature)  # (B, S)
    return pad_front(logprobs, first_target)  # (B, T)


def cache_argument(model: nn.Module) -> str:
    """Name of the KV-cache argument of ``model.forward`` (``cache`` in transformers 5)."""
    unwrap = getattr(model, "get_base_model", None)
    base = unwrap() if callable(unwrap) else model
    parameters = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned, whatever transformers calls it."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
