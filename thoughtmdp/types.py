"""Pure data types of the Thought MDP: problems, thoughts, states, trajectories, episodes.

All types are frozen dataclasses holding tuples, so states are cheap to copy, hashable and
safe to share between an environment and the code driving it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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

    @property
    def num_sampled_tokens(self) -> int:
        """Tokens sampled after ``start`` (0 for thoughts without token ids)."""
        return sum(len(t.token_ids or ()) for t in self.thoughts)


GroupKind = Literal["base", "reset"]


@dataclass(frozen=True)
class Group:
    """Rollouts whose advantages are normalised together.

    Invariants: ``advantages`` has one entry per trajectory. A base group's trajectories start
    at the prompt; a reset group's all start at the same prefix, before thought ``reset_index``.

    Attributes:
        kind: ``"base"`` (rollouts from the prompt) or ``"reset"`` (rollouts from a prefix).
        trajectories: The rollouts.
        advantages: Group-relative advantage of each rollout.
        reset_index: ``h*`` for reset groups (the first resampled thought, 1-based).
    """

    kind: GroupKind
    trajectories: tuple[Trajectory, ...]
    advantages: tuple[float, ...]
    reset_index: int | None = None

    def __post_init__(self) -> None:
        if len(self.advantages) != len(self.trajectories):
            raise ValueError("Group needs one advantage per trajectory")

    @property
    def rewards(self) -> tuple[float, ...]:
        """The terminal reward of each rollout."""
        return tuple(t.reward for t in self.trajectories)


ParseStatus = Literal["ok", "unparsable", "out_of_range", "ambiguous", "not_applicable"]


@dataclass(frozen=True)
class ResetDecision:
    """What a reset policy chose for one seed chain.

    Attributes:
        reset_index: ``h*`` in ``1..H_s``; ``None`` means no reset group for this seed.
        policy: Name of the policy that decided.
        raw_text: The localiser's raw answer, for policies that ask a model.
        parse_status: Whether that answer named a step in range (``"ambiguous"``: a bare
            number equal to the problem's answer).
        fallback: How a failed decision was handled (``"uniform"``, ``"skip"`` or
            ``"grpo"``), if it was.
    """

    reset_index: int | None
    policy: str
    raw_text: str | None = None
    parse_status: ParseStatus = "not_applicable"
    fallback: str | None = None


@dataclass(frozen=True)
class ResetRecord:
    """One reset: the failed seed chain, the decision and, when the task has one, the oracle.

    Attributes:
        seed_trajectory: The failed rollout the reset point was chosen from.
        decision: The reset policy's decision.
        oracle_index: The task's first wrong thought, when the task can tell.
        seconds: Time the decision took (localisation included); not compared.
    """

    seed_trajectory: Trajectory
    decision: ResetDecision
    oracle_index: int | None = None
    seconds: float = field(default=0.0, compare=False)

    @property
    def seed_length(self) -> int:
        """``H_s``: thoughts in the seed chain."""
        return len(self.seed_trajectory.all_thoughts)


@dataclass(frozen=True)
class Episode:
    """Everything one prompt produced: the unit an actor sends and the learner consumes.

    Attributes:
        problem_id: The prompt's problem.
        groups: The base group (if any) followed by the reset groups.
        resets: One record per seed chain, in the order of the reset groups.
        fell_back: No failed rollout was found within the budget, so only a base group exists.
        unused_tokens: Sampled-token counts of rollouts drawn from the prompt that joined no
            group and seeded no reset (correct draws while looking for seeds): generated, so
            they count towards the episode's cost, but never trained on.
        timings: Seconds spent (``total_s``, ``localize_s``); not compared.
    """

    problem_id: str
    groups: tuple[Group, ...]
    resets: tuple[ResetRecord, ...] = ()
    fell_back: bool = False
    unused_tokens: tuple[int, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def trajectories(self) -> tuple[Trajectory, ...]:
        """Every rollout, group by group."""
        return tuple(t for g in self.groups for t in g.trajectories)

    @property
    def policy_versions(self) -> tuple[int, ...]:
        """Distinct policy versions of the sampled thoughts, sorted."""
        versions = {
            t.policy_version
            for traj in self.trajectories
            for t in traj.thoughts
            if t.policy_version is not None
        }
        return tuple(sorted(versions))
