"""A :class:`~thoughtmdp.backend.PolicyBackend` on a Hugging Face causal LM, batching requests.

Requests submitted in one event-loop tick (e.g. by ``asyncio.gather``) are decoded together
as one left-padded batch with a KV cache, in a worker thread so the loop never waits on the
model. Requests that arrive while a batch runs join the next one. Each adapter version is a
named PEFT adapter (:mod:`~thoughtmdp.agents.backends.peft_versions`); rows pinned to
different versions share a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from thoughtmdp.agents.backends.peft_versions import AdapterVersion, AdapterVersions
from thoughtmdp.backend import Completion, SamplingParams
from thoughtmdp.types import Thought

CLOSED = "the backend was closed before this request ran; create a new TransformersBackend"


@dataclass(eq=False)
class _Request:
    """One request: its inputs, where its answer goes, then its decoding state and result.

    ``version`` is the pinned version it holds; ``None`` samples with the current one.
    """

    ids: list[int]
    sampling: SamplingParams
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[_Request]
    generator: torch.Generator
    version: AdapterVersion | None = None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    policy_version: int = 0


class TransformersBackend:
    """Samples thoughts and completions from a causal LM, many requests per forward pass.

    Log-probabilities are those of the distribution sampled from (vLLM's
    ``logprobs_mode="processed_logprobs"``): ``log_softmax(logits / T)`` after top-p
    filtering, or ``log_softmax(logits)`` when greedy (``temperature == 0``). Each request
    draws from its own generator seeded with ``sampling.seed``, so its tokens do not depend
    on the other rows of its batch.

    Args:
        model: A model folder, or a loaded model (used as it is: moved to ``device``, and
            wrapped in place by :meth:`load_adapter`).
        tokenizer: The tokenizer; ``None`` loads it from ``model`` when that is a folder.
        device: A torch device, e.g. ``"cpu"`` or ``"cuda"``.
        adapter: A PEFT LoRA adapter folder to sample with from the start.
        policy_version: Version of the initial weights.
        max_batch_size: Most requests decoded together.
        dtype: Weight dtype when loading ``model`` from a folder (default: the checkpoint's).

    Attributes:
        stats: Counts of ``batches`` run, ``requests`` served and ``tokens`` sampled.

    Raises:
        ValueError: If no tokenizer is given for a model object, or ``max_batch_size`` < 1.
    """

    def __init__(
        self,
        model: str | Path | Any,
        tokenizer: Any | None = None,
        *,
        device: str = "cpu",
        adapter: str | Path | None = None,
        policy_version: int = 0,
        max_batch_size: int = 16,
        dtype: torch.dtype | str | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        net: Any = model
        if isinstance(model, str | Path):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            net = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
        if tokenizer is None:
            raise ValueError("a model object needs its tokenizer: pass tokenizer=...")
        self.tokenizer = tokenizer
        self.device, self.max_batch_size = torch.device(device), max_batch_size
        self.stats = {"batches": 0, "requests": 0, "tokens": 0}
        self.eos_ids = _eos_ids(net, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._versions = AdapterVersions(
            net.to(device).eval(), self.device, policy_version=policy_version
        )
        self._cache_keyword = _cache_keyword(net)
        self._cond = threading.Condition()  # guards the queues, the worker and ``_closed``
        self._staged: dict[asyncio.AbstractEventLoop, list[_Request]] = {}
        self._waiting: deque[_Request] = deque()
        self._closed = False
        self._worker: threading.Thread | None = None
        if adapter is not None:
            self._versions.load(adapter, policy_version)

    @property
    def model(self) -> Any:
        """The model; a ``peft.PeftModel`` once an adapter is loaded."""
        return self._versions.model

    @property
    def policy_version(self) -> int:
        """Version of the weights the next batch samples with (outside :meth:`pinned`)."""
        return self._versions.current.number

    @property
    def adapter(self) -> str | None:
        """Folder of the LoRA adapter in use, ``None`` for the base model."""
        return self._versions.current.path

    async def load_adapter(self, path: str | Path, version: int | None = None) -> None:
        """Replace the LoRA adapter by the PEFT adapter in ``path``, from the next batch on.

        The load runs in a thread: it waits for the running batch to finish and reads the
        weights from disk, and the event loop goes on meanwhile. The previous adapter is
        deleted at once unless a :meth:`pinned` block holds it; then when the last one ends.

        Args:
            path: A folder written by PEFT's ``save_pretrained``.
            version: The new policy version; ``None`` adds one to the current one.
        """
        await asyncio.to_thread(self._versions.load, path, version)

    def pinned(self) -> AbstractAsyncContextManager[int]:
        """Sample every request made inside the block with the version current at its start.

        Requests of the calling task, and of the tasks it starts inside the block (they copy
        its context), keep that version's adapter while :meth:`load_adapter` loads newer
        ones; it stays loaded until the block ends and its last request finishes. A block
        inside another keeps the outer block's version.

        Returns:
            An async context manager that yields the pinned policy version.
        """
        return self._versions.pinned()

    async def sample_thought(self, state_ids: Sequence[int], sampling: SamplingParams) -> Thought:
        """Sample the next thought after ``state_ids`` (the stop strings end it).

        Args:
            state_ids: Prompt and earlier thoughts as token ids (at least one).
            sampling: How to sample.

        Returns:
            The sampled ids (stop tokens and EOS included) with their log-probabilities, the
            text before the first stop string, and the policy version that sampled them.

        Raises:
            ValueError: On empty or out-of-vocabulary ids, or an adapter not loaded here.
        """
        done = await self._submit(list(state_ids), sampling)
        return Thought(done.text, tuple(done.token_ids), tuple(done.logprobs), done.policy_version)

    async def complete(self, prompt: str, sampling: SamplingParams) -> Completion:
        """Sample a completion of ``prompt``, as :meth:`PolicyBackend.complete` describes."""
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        done = await self._submit(list(ids), sampling)
        return Completion(done.text, tuple(done.token_ids), done.finish_reason or "length")

    def close(self) -> None:
        """Stop the worker thread; requests not yet running fail with ``RuntimeError``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join()

    # -- event-loop side -----------------------------------------------------------------

    async def _submit(self, ids: list[int], sampling: SamplingParams) -> _Request:
        pinned = self._versions.pinned_version()
        self._check(ids, sampling, pinned or self._versions.current)
        loop = asyncio.get_running_loop()
        generator = torch.Generator(device=self.device)
        if sampling.seed is None:
            generator.seed()
        else:
            generator.manual_seed(sampling.seed)
        request = _Request(ids, sampling, loop, loop.create_future(), generator, pinned)
        with self._cond:
            if self._closed:
                raise RuntimeError(CLOSED)
            if pinned is not None:  # held until its batch is done, even if the pin ends first
                self._versions.hold(pinned)
            staged = self._staged.setdefault(loop, [])
            staged.append(request)
            first = len(staged) == 1
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, daemon=True)
                self._worker.start()
        if first:
            # Released at the end of this tick, so requests started together share a batch.
            loop.call_soon(self._release, loop)
        return await request.future

    def _check(self, ids: list[int], sampling: SamplingParams, version: AdapterVersion) -> None:
        if not ids:
            raise ValueError("expected at least one input token id, got none")
        vocab = self.model.get_input_embeddings().num_embeddings
        if min(ids) < 0 or max(ids) >= vocab:
            raise ValueError(f"token ids must be in [0, {vocab}), got {min(ids)}..{max(ids)}")
        if sampling.adapter is not None and sampling.adapter != version.path:
            raise ValueError(
                f"this backend samples with the adapter {version.path!r}, the request asks for "
                f"{sampling.adapter!r}; call load_adapter() first or pass adapter=None"
            )

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cond:
            self._waiting.extend(self._staged.pop(loop, []))
            if self._closed:
                while self._waiting:
                    _deliver(self._waiting.popleft(), RuntimeError(CLOSED))
            self._cond.notify()

    # -- worker thread -------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    while self._waiting:
                        _deliver(self._waiting.popleft(), RuntimeError(CLOSED))
                    return
                size = min(len(self._waiting), self.max_batch_size)
                batch = [self._waiting.popleft() for _ in range(size)]
            outcome: Exception | None = None
            try:
                self._decode(batch)
            except Exception as exc:  # every request of the batch fails with the cause
                outcome = exc
            # Let go of pinned versions before answering, so a pin that ends right after its
            # last request finds its adapter unused.
            self._versions.release([r.version for r in batch if r.version is not None])
            for request in batch:
                _deliver(request, outcome or request)

    def _decode(self, rows: list[_Request]) -> None:
        with self._versions.lock, torch.inference_mode():
            versions = [row.version or self._versions.current for row in rows]
            for row, version in zip(rows, versions, strict=True):
                row.policy_version = version.number
            names = self._versions.adapter_names(versions)  # None: the active adapter only
            width = max(len(row.ids) for row in rows)
            ids = [[self.pad_id] * (width - len(row.ids)) + row.ids for row in rows]
            mask = [[0] * (width - len(row.ids)) + [1] * len(row.ids) for row in rows]
            input_ids = torch.tensor(ids, device=self.device)  # (B, T)
            attention = torch.tensor(mask, device=self.device)  # (B, T)
            positions = (attention.cumsum(-1) - 1).clamp(min=0)  # (B, T)
            cache = DynamicCache(config=self.model.config)  # filled in place by each forward
            logits = self._forward(input_ids, attention, positions, cache, names)  # (B, V)
            next_pos = positions[:, -1:] + 1  # (B, 1)
            active = rows
            while True:
                self._sample(active, logits)
                keep = [k for k, row in enumerate(active) if row.finish_reason is None]
                if not keep:
                    break
                if len(keep) < len(active):  # finished rows leave the batch and the cache
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    attention, next_pos = attention[index], next_pos[index]
                    active = [active[k] for k in keep]
                    names = None if names is None else [names[k] for k in keep]
                step = torch.tensor([[row.token_ids[-1]] for row in active], device=self.device)
                attention = torch.cat([attention, torch.ones_like(step)], dim=1)  # (B', T + t)
                logits = self._forward(step, attention, next_pos, cache, names)  # (B', V)
                next_pos = next_pos + 1
        self.stats["batches"] += 1
        self.stats["requests"] += len(rows)
        self.stats["tokens"] += sum(len(row.token_ids) for row in rows)

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        names: list[str] | None,
    ) -> torch.Tensor:
        mixed = {} if names is None else {"adapter_names": names}
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_keyword: cache},
            **mixed,
        )
        return out.logits[:, -1].float()

    def _sample(self, rows: list[_Request], logits: torch.Tensor) -> None:
        temperature = torch.tensor([r.sampling.temperature for r in rows], device=self.device)
        top_p = torch.tensor([r.sampling.top_p for r in rows], device=self.device)
        logprobs = processed_logprobs(logits, temperature, top_p)  # (B, V)
        for b, row in enumerate(rows):
            if row.sampling.temperature == 0:
                token = int(logits[b].argmax())
            else:
                token = int(torch.multinomial(logprobs[b].exp(), 1, generator=row.generator))
            row.token_ids.append(token)
            row.logprobs.append(float(logprobs[b, token]))
            self._check_finished(row)

    def _check_finished(self, row: _Request) -> None:
        stops = [stop for stop in row.sampling.stop if stop]
        # A new stop string lies in the last tokens: each is at least one byte, and a
        # character at most four (plus a cut-off character in front).
        window = 4 * max(map(len, stops), default=0) + 4
        tail = self.tokenizer.decode(row.token_ids[-window:], skip_special_tokens=True)
        if row.token_ids[-1] in self.eos_ids or any(stop in tail for stop in stops):
            row.finish_reason = "stop"
        elif len(row.token_ids) >= row.sampling.max_tokens:
            row.finish_reason = "length"
        else:
            return
        text = self.tokenizer.decode(row.token_ids, skip_special_tokens=True)
        cuts = [cut for stop in stops if (cut := text.find(stop)) >= 0]
        row.text = text[: min(cuts)] if cuts else text


def processed_logprobs(
    logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor
) -> torch.Tensor:
    """Log-probabilities of the distribution sampled from, row by row.

    Args:
        logits: Raw next-token logits, ``(B, V)``.
        temperature: Per-row temperature, ``(B,)``; 0 (greedy) leaves the logits unscaled.
        top_p: Per-row nucleus mass, ``(B,)``; tokens outside the nucleus get ``-inf``.

    Returns:
        ``log_softmax`` of the scaled, filtered logits, ``(B, V)``.
    """
    greedy = temperature == 0
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature)[:, None]
    top_p = torch.where(greedy, torch.ones_like(top_p), top_p)[:, None]  # (B, 1)
    sorted_logits, order = scaled.sort(dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly better-ranked tokens
    # top_p == 1 keeps everything even where rounding pushes the cumulative mass past 1.
    drop_sorted = (mass_before >= top_p) & (top_p < 1)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return scaled.masked_fill(drop, float("-inf")).log_softmax(dim=-1)


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(configured) if isinstance(configured, list | tuple) else [configured]
    return frozenset(int(i) for i in [tokenizer.eos_token_id, *ids] if i is not None)


def _cache_keyword(model: Any) -> str:
    # transformers 5 renamed ``past_key_values`` to ``cache`` and warns on the old name.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _deliver(request: _Request, outcome: _Request | BaseException) -> None:
    def settle() -> None:
        if request.future.done():  # the caller was cancelled
            return
        if isinstance(outcome, BaseException):
            request.future.set_exception(outcome)
        else:
            request.future.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
        request.loop.call_soon_threadsafe(settle)
