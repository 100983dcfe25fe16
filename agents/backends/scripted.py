"""A deterministic backend driven by Python functions, for tests and demos."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from thoughtmdp.backend import Completion, SamplingParams
from thoughtmdp.mdp.prompts import THOUGHT_DELIMITER
from thoughtmdp.types import Thought

Responder = Callable[[str, SamplingParams], str]


class ScriptedBackend:
    """A :class:`~thoughtmdp.backend.PolicyBackend` whose "model" is a function of the text.

    Each request decodes the state's token ids and asks ``respond(context, sampling)`` for
    the next thought's text (``sampling.seed`` lets the function be random yet reproducible).
    The thought's token ids are the tokenizer's encoding of that text plus ``</thought>``,
    cut to ``sampling.max_tokens``; every log-probability is 0, as for a deterministic policy.

    Args:
        tokenizer: Encodes and decodes text (a Hugging Face tokenizer qualifies).
        respond: Maps the decoded state to the next thought's text.
        localize: Maps a localiser prompt to its answer (default: always step 1).
        policy_version: Version reported on every thought (inside a :meth:`pinned` block,
            the block's version).

    Attributes:
        calls: Requests served, by method.
        loaded: Folders passed to :meth:`load_adapter`, in order.
        pins: How many :meth:`pinned` blocks hold each version now.
    """

    def __init__(
        self,
        tokenizer: Any,
        respond: Responder,
        localize: Callable[[str], str] = lambda prompt: "\\boxed{1}",
        policy_version: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.respond = respond
        self.localize = localize
        self._version = policy_version
        self.calls = {"sample_thought": 0, "complete": 0}
        self.loaded: list[str] = []
        self.pins: dict[int, int] = {}
        self._pin: contextvars.ContextVar[int | None] = contextvars.ContextVar(
            f"scripted-pin-{id(self)}", default=None
        )

    @property
    def policy_version(self) -> int:
        """The version reported on every thought."""
        return self._version

    async def load_adapter(self, path: str | Path, version: int | None = None) -> None:
        """Record a new policy version (a scripted policy has no weights to load)."""
        self._version = self._version + 1 if version is None else version
        self.loaded.append(str(path))

    @contextlib.asynccontextmanager
    async def pinned(self) -> AsyncIterator[int]:
        """Report the version current at the block's start on every thought made inside it."""
        pinned = self._pin.get()
        version = self._version if pinned is None else pinned
        self.pins[version] = self.pins.get(version, 0) + 1
        token = self._pin.set(version)
        try:
            yield version
        finally:
            self._pin.reset(token)
            self.pins[version] -= 1
            if not self.pins[version]:
                del self.pins[version]

    async def sample_thought(self, state_ids: Sequence[int], sampling: SamplingParams) -> Thought:
        """The responder's next thought for the decoded state."""
        self.calls["sample_thought"] += 1
        await asyncio.sleep(0)  # let other requests interleave, as a real engine would
        text = self.respond(self.tokenizer.decode(list(state_ids)), sampling)
        ids = self.tokenizer.encode(text + THOUGHT_DELIMITER, add_special_tokens=False)
        if len(ids) > sampling.max_tokens:
            ids = ids[: sampling.max_tokens]
            text = self.tokenizer.decode(ids).split(THOUGHT_DELIMITER)[0]
        pinned = self._pin.get()
        version = self._version if pinned is None else pinned
        return Thought(text, tuple(ids), (0.0,) * len(ids), version)

    async def complete(self, prompt: str, sampling: SamplingParams) -> Completion:
        """The localiser function's answer to ``prompt``."""
        self.calls["complete"] += 1
        await asyncio.sleep(0)
        text = self.localize(prompt)
        ids = self.tokenizer.encode(text, add_special_tokens=False)[: sampling.max_tokens]
        return Completion(text, tuple(ids))
