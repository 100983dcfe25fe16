"""Pure data types of the Thought MDP: problems, thoughts, prefix states, trajectories.

All types are frozen dataclasses holding tuples, so states are cheap to copy, hashable and
safe to share between an environment and the code driving it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TokenIds = tuple[int, ...]


@dataclass(frozen=True)
class Problem:
    """One task instance.

    Attributes:
        id: Unique within its task, across splits (e.g. ``"train/17"``).
        question: The problem statement shown to the model (without the rollout instructions).
        answer: The gold final answer as text (may be empty for tasks graded by tests).
        split: The split the problem belongs to.
        payload: Task-specific data the verifier needs (intermediate results, tests, ...).
    """

    id: str
    question: str
    answer: str = ""
    split: str = "train"
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Thought:
    """One action of the Thought MDP: a reasoning step.

    Invariants: when both are present, ``logprobs`` has the length of ``token_ids``.
    ``text`` never contains the thought delimiter; ``token_ids`` are exactly what the model
    sampled, delimiter (stop) tokens included.

    Attributes:
        text: The decoded step, without the trailing ``</thought>``.
        token_ids: Sampled token ids, stop tokens included; ``None`` when not sampled by a model.
        logprobs: Behaviour log-probabilities of ``token_ids`` under the sampling distribution.
        policy_version: Version of the policy (adapter) that produced the thought.
    """

    text: str
    token_ids: TokenIds | None = None
    logprobs: tuple[float, ...] | None = None
    policy_version: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Thought.text must be a str, got {type(self.text).__name__}")
        if self.token_ids is not None:
            object.__setattr__(self, "token_ids", tuple(int(t) for t in self.token_ids))
        if self.logprobs is not None:
            object.__setattr__(self, "logprobs", tuple(float(x) for x in self.logprobs))
            if self.token_ids is None or len(self.logprobs) != len(self.token_ids):
                raise ValueError("Thought.logprobs needs token_ids of the same length")


@dataclass(frozen=True)
class PrefixState:
    """A state of the Thought MDP: the prompt plus the thoughts taken so far.

    Attributes:
        problem_id: The problem this state belongs to.
        prompt_token_ids: Token ids of the rendered prompt; ``None`` without a tokenizer.
        thoughts: The thoughts so far; ``h = len(thoughts)``.
    """

    problem_id: str
    prompt_token_ids: TokenIds | None = None
    thoughts: tuple[Thought, ...] = ()

    @property
    def h(self) -> int:
        """Number of thoughts taken so far."""
        return len(self.thoughts)

    def prefix(self, h: int) -> PrefixState:
        """The state after the first ``h`` thoughts of this one.

        Raises:
            InvalidPrefixError: If ``h`` is not in ``0..self.h``.
        """
        from thoughtmdp.errors import InvalidPrefixError

        if not 0 <= h <= self.h:
            raise InvalidPrefixError(f"prefix length must be in 0..{self.h}, got {h}")
        return PrefixState(self.problem_id, self.prompt_token_ids, self.thoughts[:h])


@dataclass(frozen=True)
class Score:
    """A verifier's verdict on a finished chain.

    Attributes:
        reward: In ``[0, 1]``.
        info: Why: the extracted answer, the gold answer, any error or timeout.
    """

    reward: float
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trajectory:
    """The thoughts sampled from a start state until the episode ended.

    Attributes:
        start: The state sampling started from (the prompt, or a reset prefix).
        thoughts: The thoughts sampled after ``start``.
        reward: The terminal reward (0 when truncated without an answer).
        terminated: The task saw a final answer.
        truncated: A chain cap or token budget ended the episode.
        info: The verifier's information.
    """

    start: PrefixState
    thoughts: tuple[Thought, ...]
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def problem_id(self) -> str:
        """The problem this trajectory solves."""
        return self.start.problem_id

    @property
    def all_thoughts(self) -> tuple[Thought, ...]:
        """Prefix thoughts followed by the sampled ones."""
        return self.start.thoughts + self.thoughts
