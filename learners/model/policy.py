"""The trainable policy: a Hugging Face causal LM with a PEFT LoRA adapter, and its log-probs.

Temperature: the actors sample from ``softmax(logits / T)`` (then top-p) and report
``log_softmax(logits / T)`` as behaviour log-probabilities, so the learner divides the logits
by the same ``T`` (``loss.temperature``, 0.7 by default) before the log-softmax. Its ``pi`` is
then the distribution the tokens came from, up to top-p truncation, which is not reproduced:
a token outside the nucleus could not have been sampled, so the difference is confined to
the renormalisation of the nucleus (``mu >= pi`` on sampled tokens).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from thoughtmdp.settings.learner import LearnerConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


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


def token_logprobs(
    model: Callable[..., Any], input_ids: Tensor, temperature: float, first_target: int = 1
) -> Tensor:
    """``log pi(x_t | x_<t)`` of every token, aligned with ``input_ids`` (column 0 is 0).

    Rows must be right-padded (as ``training_arrays`` pads them). No attention mask is
    passed: under causal attention a real token only sees earlier positions, all real, so
    padding changes nothing but the padded positions' own outputs, which carry no loss; and
    transformers' masked attention path is several times slower on CPU, backward included.
    Logits are computed only from position ``first_target - 1`` on: the tokens before
    ``first_target`` (a shared prompt or prefix) carry no loss.

    Args:
        model: The policy (or a DeepSpeed engine around it).
        input_ids: Token ids, right-padded.  # (B, T)
        temperature: The sampling temperature.
        first_target: First column whose log-probability is needed (at least 1).

    Returns:
        Log-probabilities; columns before ``first_target`` are 0.  # (B, T)
    """
    batch, width = input_ids.shape
    keep = width - first_target + 1  # logits of positions first_target-1 .. T-1
    logits = model(input_ids=input_ids, logits_to_keep=keep).logits
    logprobs = gather_logprobs(logits[:, :-1], input_ids[:, first_target:], temperature)
    zeros = logprobs.new_zeros(batch, first_target)  # (B, first_target)
    return torch.cat([zeros, logprobs], dim=1)  # (B, T)


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
