"""The policy-backend interface that actors sample thoughts from.

Backends (vLLM, transformers, scripted) live in :mod:`thoughtmdp.agents`; the core only
defines what they promise, so rollouts, reset policies and episode construction can be
written, and tested, against any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from thoughtmdp.mdp.prompts import THOUGHT_DELIMITER
from thoughtmdp.types import Thought


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one thought (or one completion).

    Attributes:
        temperature: Softmax temperature; 0 means greedy.
        top_p: Nucleus mass kept (1.0 keeps everything).
        max_tokens: Most tokens sampled for one thought.
        seed: Seed of this request, for reproducible sampling; ``None`` draws fresh randomness.
        stop: Strings that end the thought; they stay in the token ids, not in the text.
        adapter: Name or path of a LoRA adapter to sample with; ``None`` for the base model.
    """

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    stop: tuple[str, ...] = field(default=(THOUGHT_DELIMITER,))
    adapter: str | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")


@dataclass(frozen=True)
class Completion:
    """A plain completion (the localiser's answer), not part of any training data.

    Attributes:
        text: The decoded completion, without stop strings.
        token_ids: The sampled token ids.
        finish_reason: ``"stop"`` (stop string or end of sequence) or ``"length"``.
    """

    text: str
    token_ids: tuple[int, ...] = ()
    finish_reason: str = "stop"


@runtime_checkable
class PolicyBackend(Protocol):
    """What actors need from a language-model backend. Calls may run concurrently.

    ``sample_thought`` continues a state given as token ids (prompt followed by the thoughts'
    ids) and returns one :class:`Thought` whose ``token_ids`` are exactly the sampled tokens,
    stop tokens included, with their behaviour log-probabilities and the policy version.
    ``complete`` answers a text prompt (the self-localisation question).
    """

    @property
    def policy_version(self) -> int:
        """Version of the weights new requests are sampled with."""
        ...

    async def sample_thought(self, state_ids: Sequence[int], sampling: SamplingParams) -> Thought:
        """Sample the next thought after ``state_ids``."""
        ...

    async def complete(self, prompt: str, sampling: SamplingParams) -> Completion:
        """Sample a completion of ``prompt``, which the backend tokenises without special tokens.

        Args:
            prompt: The text to continue.
            sampling: How to sample; ``stop=()`` runs until EOS or ``max_tokens``.

        Returns:
            The completion; finish reason ``"stop"`` (stop string or EOS) or ``"length"``.

        Raises:
            ValueError: On a prompt of no tokens, or an adapter not loaded here.
        """
        ...
