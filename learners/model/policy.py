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
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.learner import LearnerConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Logits elements per chunk of the entropy (64 MiB of float32 per temporary).
ENTROPY_CHUNK_ELEMENTS = 2**24
# Logits elements per chunk of the output layer's scoring (64 MiB of float32 per temporary).
LOGIT_CHUNK_ELEMENTS = 2**24


class TokenScores(NamedTuple):
    """What the learner reads off one forward pass, aligned with ``input_ids``.

    Columns before the first scored one (a shared prompt or prefix) are 0 in both.

    Attributes:
        logprobs: ``log pi(x_t | x_<t)``, with gradient.  # (B, T) float32
        entropy: ``H(pi(. | x_<t))`` over the full vocabulary, without gradient.  # (B, T)
    """

    logprobs: Tensor
    entropy: Tensor


def load_policy(config: LearnerConfig, ds_config: dict[str, Any] | None = None) -> nn.Module:
    """The base model from ``config.model`` with a fresh LoRA adapter; only the adapter trains.

    Under DeepSpeed ZeRO-3 the base model is loaded partitioned: no rank ever holds all of it.
    A transformers ``HfDeepSpeedConfig`` made from ``ds_config`` (the dict ``deepspeed.initialize``
    gets next) makes ``from_pretrained`` build the model under ``deepspeed.zero.Init``: every
    base weight is a ZeRO-3 placeholder of which this rank keeps its ``1 / world_size`` share,
    on its device, and the checkpoint is copied in one module at a time (by rank 0, then
    partitioned again). The LoRA weights PEFT adds afterwards are whole, and alike on every
    rank (seeded), until ``deepspeed.initialize`` partitions them. The model keeps the
    ``HfDeepSpeedConfig`` alive as ``hf_deepspeed_config`` (transformers holds only a weak
    reference to it). The process group must be joined first. With any other ``ds_config``
    (stages 0-2) or none, the whole model is loaded, as by a single process.

    Args:
        config: Learner settings (``model``, ``lora``, ``dtype``, ``seed``,
            ``gradient_checkpointing``).
        ds_config: The run's DeepSpeed config, ``None`` without DeepSpeed.

    Returns:
        A ``peft.PeftModel`` in training mode, on the CPU (under ZeRO-3, partitioned over
        the ranks' devices).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    partitioned_load = zero3_partitioned_load(ds_config)
    base = AutoModelForCausalLM.from_pretrained(config.model, dtype=DTYPES[config.dtype])
    if config.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
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
    if partitioned_load is not None:
        model.hf_deepspeed_config = partitioned_load
    return model


def zero3_partitioned_load(ds_config: dict[str, Any] | None) -> Any:
    """An ``HfDeepSpeedConfig`` (transformers) of ``ds_config`` if it is ZeRO-3's, else ``None``.

    While the returned object lives, ``from_pretrained`` loads models partitioned under
    ``deepspeed.zero.Init`` with this config.
    """
    if ds_config is None or ds_config.get("zero_optimization", {}).get("stage", 0) != 3:
        return None
    from transformers.integrations.deepspeed import HfDeepSpeedConfig

    return HfDeepSpeedConfig(ds_config)


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
    """Full-vocabulary logits that predict ``input_ids[:, first_target:]`` (a reference).

    The learner never builds these: :func:`token_scores` computes the same log-probabilities
    a chunk of positions at a time. Rows are right-padded and no attention mask is passed
    (see :func:`token_scores`).

    Returns:
        Logits (a view of the model's output).  # (B, T - first_target, V)
    """
    keep = input_ids.shape[1] - first_target + 1  # logits of positions first_target-1 .. T-1
    return model(input_ids=input_ids, logits_to_keep=keep).logits[:, :-1]


def pad_front(values: Tensor, columns: int) -> Tensor:
    """``values`` with ``columns`` zero columns in front (the unscored prompt or prefix)."""
    return torch.cat([values.new_zeros(values.shape[0], columns), values], dim=1)


def shifted_targets(input_ids: Tensor) -> Tensor:
    """The token each position predicts: ``input_ids[:, 1:]`` and a dummy last column (id 0)."""
    return torch.cat([input_ids[:, 1:], input_ids.new_zeros(input_ids.shape[0], 1)], dim=1)


def token_scores(
    model: Callable[..., Any], input_ids: Tensor, temperature: float, first_target: int = 1
) -> TokenScores:
    """Log-probabilities and entropies of every token from one forward pass.

    Rows must be right-padded (as ``training_arrays`` pads them). No attention mask is
    passed: under causal attention a real token only sees earlier positions, all real, so
    padding changes nothing but the padded positions' own outputs, which carry no loss; and
    transformers' masked attention path is several times slower on CPU, backward included.
    Only positions from ``first_target - 1`` on are scored (the tokens before ``first_target``,
    a shared prompt or prefix, carry no loss), and never as a full ``(B, T, V)`` logits tensor:
    :func:`scoring_head` runs the output layer and the log-softmax a chunk at a time.

    Args:
        model: The policy (or an engine around it).
        input_ids: Token ids, right-padded.  # (B, T)
        temperature: The sampling temperature.
        first_target: First column scored (at least 1).

    Returns:
        Log-probabilities and entropies; columns before ``first_target`` are 0.
    """
    keep = input_ids.shape[1] - first_target + 1  # positions first_target-1 .. T-1
    targets = shifted_targets(input_ids[:, first_target - 1 :])  # (B, keep)
    scores, _ = scored_forward(
        model, targets, temperature, input_ids=input_ids, logits_to_keep=keep
    )
    logprobs, entropy = scores.logprobs[:, :-1], scores.entropy[:, :-1]  # (B, S)
    return TokenScores(pad_front(logprobs, first_target), pad_front(entropy, first_target))


def token_logprobs(
    model: Callable[..., Any], input_ids: Tensor, temperature: float, first_target: int = 1
) -> Tensor:
    """``log pi(x_t | x_<t)`` of every token, aligned with ``input_ids`` (column 0 is 0).

    One forward pass as :func:`token_scores` describes.

    Args:
        model: The policy (or an engine around it).
        input_ids: Token ids, right-padded.  # (B, T)
        temperature: The sampling temperature.
        first_target: First column whose log-probability is needed (at least 1).

    Returns:
        Log-probabilities; columns before ``first_target`` are 0.  # (B, T)
    """
    return token_scores(model, input_ids, temperature, first_target).logprobs


def policy_module(model: Any) -> nn.Module:
    """The policy module behind ``model`` (an engine of :mod:`.engine`, or the module itself)."""
    return model if isinstance(model, nn.Module) else model.model


def scored_forward(
    model: Callable[..., Any], targets: Tensor, temperature: float, **inputs: Any
) -> tuple[TokenScores, Any]:
    """One forward pass whose output layer scores ``targets`` instead of returning logits.

    Args:
        model: The policy (or an engine around it).
        targets: The token each kept position predicts.  # (B, K)
        temperature: The sampling temperature.
        **inputs: Arguments of the forward pass; it must keep ``K`` positions.

    Returns:
        Log-probabilities (with gradient) and entropies of ``targets``, each ``(B, K)``, and the
        model's output (its ``logits`` are the log-probabilities).
    """
    with scoring_head(policy_module(model), targets, temperature) as entropy:
        output = model(**inputs)
    return TokenScores(output.logits, entropy[0]), output


@contextlib.contextmanager
def scoring_head(module: nn.Module, targets: Tensor, temperature: float) -> Iterator[list[Tensor]]:
    """Inside, the output layer returns the log-probabilities of ``targets`` (chunked).

    The output layer (``lm_head``) stays the module that is called, so hooks on it (ZeRO-3
    gathers its weight there, once per forward) run as usual; only its computation changes.
    Its input ``(B or 1, K, H)`` (one row is broadcast over the targets' rows) becomes
    ``log_softmax(h W^T / T)`` at ``targets``, ``(B, K)``, by :class:`ChunkedHeadScores`.

    Args:
        module: The policy.
        targets: The token each position the head sees predicts.  # (B, K)
        temperature: The sampling temperature.

    Yields:
        A list that holds the entropies ``(B, K)`` once the forward pass has run.

    Raises:
        ThoughtMDPError: If the output layer is not a linear layer without bias.
    """
    head: Any = cast(Any, module).get_output_embeddings()
    if not isinstance(head, nn.Linear) or getattr(head, "bias", None) is not None:
        raise ThoughtMDPError(
            f"the learner scores tokens through a bias-free linear output layer; "
            f"this model's is {type(head).__name__}"
        )
    entropy: list[Tensor] = []
    rows = max(1, LOGIT_CHUNK_ELEMENTS // head.out_features)

    def forward(hidden: Tensor) -> Tensor:
        hidden = hidden.expand(targets.shape[0], -1, -1)  # (B, K, H)
        logprobs, entropies = ChunkedHeadScores.apply(
            hidden, head.weight, targets, temperature, rows
        )
        entropy.append(entropies)
        return logprobs

    head.forward = forward  # type: ignore[method-assign,assignment]
    try:
        yield entropy
    finally:
        del head.forward


class ChunkedHeadScores(torch.autograd.Function):
    """``log_softmax(h W^T / T)`` at the targets, and the entropy, ``rows`` positions at a time.

    Neither pass holds more than a few ``rows x V`` float32 temporaries: forward keeps only
    each position's log-normaliser, backward recomputes each chunk's logits. Values and
    gradients equal those of the full ``(B, K, V)`` computation (logits in the weight's
    dtype, softmax in float32) up to float rounding.
    """

    @staticmethod
    def forward(
        ctx: Any, hidden: Tensor, weight: Tensor, targets: Tensor, temperature: float, rows: int
    ) -> tuple[Tensor, Tensor]:
        """Log-probabilities and entropies of ``targets``, each shaped like ``targets``."""
        flat, ids = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)  # (N, H), (N,)
        dtype = torch.promote_types(weight.dtype, torch.float32)  # the softmax's
        logprobs, entropy, lse = (
            torch.empty(ids.shape[0], dtype=dtype, device=hidden.device) for _ in range(3)
        )
        for start in range(0, ids.shape[0], rows):
            part = slice(start, start + rows)
            z = F.linear(flat[part], weight).to(dtype) / temperature  # (c, V)
            lse[part] = torch.logsumexp(z, dim=-1)
            logprobs[part] = z.gather(-1, ids[part, None]).squeeze(-1) - lse[part]
            entropy[part] = lse[part] - (torch.softmax(z, dim=-1) * z).sum(-1)
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature, ctx.rows = temperature, rows
        logprobs, entropy = logprobs.view(targets.shape), entropy.view(targets.shape)
        ctx.mark_non_differentiable(entropy)
        return logprobs, entropy

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _: Tensor) -> tuple[Tensor | None, ...]:
        """``d logp / dz = onehot - softmax``, chunk by chunk, through ``z = h W^T / T``."""
        hidden, weight, targets, lse = ctx.saved_tensors
        flat, ids, grad = (
            hidden.reshape(-1, hidden.shape[-1]),
            targets.reshape(-1),
            grad.reshape(-1),
        )
        grad_hidden = torch.empty_like(flat) if ctx.needs_input_grad[0] else None
        dtype = lse.dtype
        grad_weight = torch.zeros_like(weight, dtype=dtype) if ctx.needs_input_grad[1] else None
        for start in range(0, ids.shape[0], ctx.rows):
            part = slice(start, start + ctx.rows)
            z = F.linear(flat[part], weight).to(dtype) / ctx.temperature  # (c, V)
            dz = torch.exp(z - lse[part, None]).mul_(-grad[part, None])  # (c, V)
            dz.scatter_add_(-1, ids[part, None], grad[part, None])
            dz = (dz / ctx.temperature).to(weight.dtype)
            if grad_hidden is not None:
                grad_hidden[part] = dz @ weight
            if grad_weight is not None:
                grad_weight += (dz.t() @ flat[part]).to(dtype)
        return (
            None if grad_hidden is None else grad_hidden.view(hidden.shape),
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None,
            None,
            None,
        )


def cache_argument(model: nn.Module) -> str:
    """Name of the KV-cache argument of ``model.forward`` (``cache`` in transformers 5)."""
    unwrap = getattr(model, "get_base_model", None)
    base = unwrap() if callable(unwrap) else model
    parameters = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"
