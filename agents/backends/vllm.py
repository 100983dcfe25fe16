"""A :class:`~thoughtmdp.backend.PolicyBackend` on vLLM's ``AsyncLLMEngine``, with LoRA versions.

Each thought is one request whose prompt is the state's token ids, so the prefix cache turns
a chain of thoughts, and a reset group's shared prefix, into cache hits. Each adapter version
gets a new LoRA name and integer id; a version is removed from the engine once the last
request sampling with it has finished and the last :meth:`VLLMBackend.pinned` block holding
it has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from thoughtmdp.agents.backends.vllm_engine import (
    default_options,
    engine_args,
    last_output,
    on_cpu,
    require_vllm,
    set_cpu_kv_cache_space,
    token_prompt,
    vllm_sampling,
)
from thoughtmdp.backend import Completion, SamplingParams
from thoughtmdp.types import Thought

logger = logging.getLogger(__name__)
CLOSED = "the backend was closed; create a new VLLMBackend"


@dataclass(frozen=True)
class RequestRecord:
    """What one finished request cost and reused.

    Attributes:
        request_id: The engine's request id.
        prompt_tokens: Tokens of the prompt (the state).
        cached_tokens: Prompt tokens served from the prefix cache.
        output_tokens: Tokens sampled.
        policy_version: Version of the weights that sampled them.
        finish_reason: ``"stop"`` or ``"length"``.
    """

    request_id: str
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    policy_version: int
    finish_reason: str


@dataclass(eq=False)
class _Version:
    """A policy version: its LoRA (``None`` for the base model), running requests and pins.

    It stays in the engine while it is current, ``in_flight`` or ``pins`` is positive.
    """

    number: int
    lora: Any | None = None  # vllm.lora.request.LoRARequest
    path: str | None = None
    in_flight: int = 0
    pins: int = 0
    removed: bool = False


class VLLMBackend:
    """Samples thoughts and completions with vLLM; one engine, one event loop.

    The engine's output handler is bound to the event loop of the first request, so use the
    backend from that loop only. Start it under ``if __name__ == "__main__":`` in scripts:
    vLLM spawns its engine process, which re-imports the main module.

    Args:
        model: Model folder or hub name.
        lora_rank: Rank r of the adapters to load; ``max_lora_rank`` becomes the smallest
            value vLLM accepts that holds it.
        max_lag: Versions an actor may trail the learner; ``max_loras = max_lag + 1``.
        max_in_flight: Most requests submitted to the engine at once; others wait their turn.
        policy_version: Version of the base weights (before any :meth:`load_adapter`).
        engine_options: ``vllm.AsyncEngineArgs`` keywords, merged over our defaults.
        cpu_kv_cache_gib: KV cache on CPU, unless ``VLLM_CPU_KVCACHE_SPACE`` is set.
        shutdown_timeout_s: How long :meth:`close` waits for the engine process to exit.
        record_limit: How many :class:`RequestRecord` to keep (the newest).

    Attributes:
        engine: The ``vllm.AsyncLLMEngine``.
        stats: Totals of ``requests``, ``prompt_tokens``, ``cached_tokens``, ``output_tokens``.
        records: One :class:`RequestRecord` per finished request, the newest last.

    Raises:
        DependencyNotInstalled: If vLLM is not installed.
        ValueError: On an unknown engine option, a bad LoRA rank or ``max_in_flight`` < 1.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        lora_rank: int = 64,
        max_lag: int = 1,
        max_in_flight: int = 256,
        policy_version: int = 0,
        engine_options: Mapping[str, Any] | None = None,
        cpu_kv_cache_gib: int = 1,
        shutdown_timeout_s: int = 30,
        record_limit: int = 100_000,
    ) -> None:
        require_vllm()
        from vllm import AsyncLLMEngine

        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        cpu = on_cpu()
        options = default_options(lora_rank=lora_rank, max_lag=max_lag, cpu=cpu)
        options.update(engine_options or {})
        args = engine_args(str(model), options)
        if cpu:
            set_cpu_kv_cache_space(cpu_kv_cache_gib)
        self.engine: Any = AsyncLLMEngine.from_engine_args(args)
        self.tokenizer = self.engine.get_tokenizer()
        self.vocab_size = int(self.engine.model_config.get_vocab_size())
        self.max_lora_rank = int(options["max_lora_rank"])
        self.stats = {"requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "output_tokens": 0}
        self.records: deque[RequestRecord] = deque(maxlen=record_limit)
        # A semaphore, not asyncio-throttle's Throttler: that one bounds how many requests
        # start per period, not how many are running.
        self._slots = asyncio.Semaphore(max_in_flight)
        self._load_lock = asyncio.Lock()
        self._current = _Version(policy_version)
        # The version pinned by the enclosing ``pinned()`` block of the calling task, if any;
        # tasks started inside the block (``asyncio.gather``) copy it with their context.
        self._pin: contextvars.ContextVar[_Version | None] = contextvars.ContextVar(
            f"vllm-pin-{id(self)}", default=None
        )
        self._lora_ids = itertools.count(1)  # vLLM needs ids > 0; never reused
        self._request_ids = itertools.count()
        self._shutdown_timeout_s = shutdown_timeout_s

    @property
    def policy_version(self) -> int:
        """Version of the weights new requests sample with (outside :meth:`pinned` blocks)."""
        return self._current.number

    @property
    def adapter(self) -> str | None:
        """Folder of the adapter new requests sample with; ``None`` for the base model."""
        return self._current.path

    @property
    def lora_request(self) -> Any | None:
        """The ``vllm.lora.request.LoRARequest`` new requests use; ``None`` for the base model."""
        return self._current.lora

    async def load_adapter(self, path: str | Path, version: int | None = None) -> None:
        """Sample new requests with the PEFT adapter in ``path``; running ones keep theirs.

        The adapter is loaded under a new name and id, so the engine never confuses it with
        an earlier version (vLLM caches adapters by id). The previous version is removed from
        the engine as soon as no request and no :meth:`pinned` block uses it.

        Args:
            path: A folder written by PEFT's ``save_pretrained``.
            version: The new policy version; ``None`` adds one to the current one.

        Raises:
            ValueError: If the adapter's rank exceeds the engine's ``max_lora_rank``.
            RuntimeError: If the backend is closed or the engine refuses the adapter.
        """
        from vllm.lora.request import LoRARequest

        self._check_rank(Path(path))
        async with self._load_lock:
            number = self._current.number + 1 if version is None else version
            lora_id = next(self._lora_ids)
            lora = LoRARequest(f"policy-v{number}-{lora_id}", lora_id, str(Path(path).resolve()))
            if not await self._live_engine().add_lora(lora):
                raise RuntimeError(f"vLLM did not load the adapter {lora.lora_name} from {path}")
            previous, self._current = self._current, _Version(number, lora, str(path))
            await self._release(previous)

    @contextlib.asynccontextmanager
    async def pinned(self) -> AsyncIterator[int]:
        """Sample every request made inside the block with the version current at its start.

        Requests of the calling task, and of the tasks it starts inside the block (they
        copy its context), keep that version while :meth:`load_adapter` loads newer ones;
        the version stays in the engine until the block ends and its last request finishes.
        A block inside another keeps the outer block's version.

        Yields:
            The pinned policy version.
        """
        version = self._pin.get() or self._current
        version.pins += 1
        token = self._pin.set(version)
        try:
            yield version.number
        finally:
            self._pin.reset(token)
            version.pins -= 1
            await self._release(version)

    async def sample_thought(self, state_ids: Sequence[int], sampling: SamplingParams) -> Thought:
        """Sample the next thought after ``state_ids`` (the stop strings end it).

        Args:
            state_ids: Prompt and earlier thoughts as token ids (at least one).
            sampling: How to sample.

        Returns:
            The sampled ids up to and including the token that completed a stop string (or
            EOS), their processed log-probabilities, the text before the stop string, and the
            policy version that sampled them.

        Raises:
            ValueError: On empty or out-of-vocabulary ids, or an adapter not loaded here.
        """
        output, version = await self._generate(list(state_ids), sampling)
        ids = tuple(output.token_ids)
        # Tokens sampled in the same step after the stop string are cut from the ids only.
        steps = output.logprobs[: len(ids)]
        logprobs = tuple(step[token].logprob for token, step in zip(ids, steps, strict=True))
        return Thought(output.text, ids, logprobs, version)

    async def complete(self, prompt: str, sampling: SamplingParams) -> Completion:
        """Sample a completion of ``prompt``, as :meth:`PolicyBackend.complete` describes."""
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        output, _ = await self._generate(list(ids), sampling)
        return Completion(output.text, tuple(output.token_ids), output.finish_reason)

    def close(self) -> None:
        """Shut the engine down (blocking until its process exits); later requests fail."""
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.shutdown(timeout=self._shutdown_timeout_s)

    async def __aenter__(self) -> VLLMBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def _generate(self, ids: list[int], sampling: SamplingParams) -> tuple[Any, int]:
        pinned = self._pin.get()
        self._check(ids, sampling, pinned or self._current)
        params = vllm_sampling(sampling)
        async with self._slots:
            # Chosen once running, so the newest weights serve an unpinned request.
            version = pinned or self._current
            if version.removed:
                raise RuntimeError(
                    f"a request pinned to version {version.number} started after its pin ended"
                )
            version.in_flight += 1
            try:
                request_id = f"thought-{next(self._request_ids)}"
                stream = self._live_engine().generate(
                    token_prompt(ids), params, request_id, lora_request=version.lora
                )
                final = await last_output(stream)
            finally:
                version.in_flight -= 1
                await self._release(version)
        output = final.outputs[0]
        if output.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM request {request_id} ended with {output.finish_reason!r}")
        self._record(request_id, final, output, version.number)
        return output, version.number

    def _check(self, ids: list[int], sampling: SamplingParams, version: _Version) -> None:
        if not ids:
            raise ValueError("expected at least one input token id, got none")
        if min(ids) < 0 or max(ids) >= self.vocab_size:
            raise ValueError(
                f"token ids must be in [0, {self.vocab_size}), got {min(ids)}..{max(ids)}"
            )
        if sampling.adapter is not None and sampling.adapter != version.path:
            raise ValueError(
                f"this backend samples with the adapter {version.path!r}, the request asks for "
                f"{sampling.adapter!r}; call load_adapter() first or pass adapter=None"
            )

    def _check_rank(self, folder: Path) -> None:
        config = folder / "adapter_config.json"
        rank = json.loads(config.read_text()).get("r") if config.is_file() else None
        if isinstance(rank, int) and rank > self.max_lora_rank:
            raise ValueError(
                f"the adapter in {folder} has rank {rank}, the engine holds ranks up to "
                f"{self.max_lora_rank}; create the backend with lora_rank={rank}"
            )

    async def _release(self, version: _Version) -> None:
        if version is self._current or version.in_flight or version.pins or version.removed:
            return
        version.removed = True  # set before the await: a concurrent release returns above
        if version.lora is None:
            return
        engine = self.engine
        if engine is not None:
            await engine.remove_lora(version.lora.lora_int_id)

    def _record(self, request_id: str, final: Any, output: Any, version: int) -> None:
        record = RequestRecord(
            request_id,
            len(final.prompt_token_ids or ()),
            int(final.num_cached_tokens or 0),
            len(output.token_ids),
            version,
            output.finish_reason,
        )
        self.records.append(record)
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += record.prompt_tokens
        self.stats["cached_tokens"] += record.cached_tokens
        self.stats["output_tokens"] += record.output_tokens

    def _live_engine(self) -> Any:
        if self.engine is None:
            raise RuntimeError(CLOSED)
        return self.engine
