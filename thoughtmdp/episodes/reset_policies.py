"""Reset policies: where to rewind a failed chain (paper section 4.2).

``none`` is GRPO (no reset group), ``uniform`` is RRPO, ``self`` is SRPO (the policy names its
own first wrong step), ``oracle`` asks the task and ``least_confident`` picks the thought the
policy sampled with the lowest token log-probabilities (no model call). Users add theirs with
:func:`register_reset_policy` or the entry-point group ``thoughtmdp.reset_policies``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from thoughtmdp.backend import PolicyBackend, SamplingParams
from thoughtmdp.episodes.localization import parse_step_index, render_localizer_prompt
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.mdp.boxed import last_boxed
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.registry import Registry
from thoughtmdp.types import ResetDecision, Trajectory


@dataclass(frozen=True)
class ResetContext:
    """What a reset policy may look at.

    Attributes:
        seed_trajectory: The failed chain, started at the prompt (``H_s`` thoughts).
        task: The task, for its problem text and oracle.
        backend: The policy being trained, for policies that query it.
        rng: Randomness owned by this decision.
        render_prompt: Turns a question for the policy into the text its backend completes:
            the user turn of the chat template the rollout prompts use (the env's
            :attr:`~thoughtmdp.mdp.env.ThoughtMDPEnv.chat`), or the text as it is (the
            default, ``str``).
    """

    seed_trajectory: Trajectory
    task: VerifiableTask
    backend: PolicyBackend
    rng: np.random.Generator
    render_prompt: Callable[[str], str] = str

    @property
    def seed_length(self) -> int:
        """``H_s``."""
        return len(self.seed_trajectory.all_thoughts)


class ResetPolicy(ABC):
    """Chooses ``h*`` in ``1..H_s`` for a failed seed chain, or no reset."""

    name: str = "reset_policy"
    requires_step_oracle: bool = False
    """Set when the policy calls ``task.first_error_step``: the builder checks the task."""

    @abstractmethod
    async def decide(self, context: ResetContext) -> ResetDecision:
        """Pick the reset index for ``context.seed_trajectory``."""


class NoReset(ResetPolicy):
    """GRPO: never reset; episodes have a base group only."""

    name = "none"

    async def decide(self, context: ResetContext) -> ResetDecision:
        """Always no reset."""
        return ResetDecision(None, self.name)


class UniformReset(ResetPolicy):
    """RRPO: ``h* ~ Uniform{1..H_s}``."""

    name = "uniform"

    async def decide(self, context: ResetContext) -> ResetDecision:
        """A uniformly random thought of the seed chain."""
        return ResetDecision(int(context.rng.integers(1, context.seed_length + 1)), self.name)


Fallback = Literal["uniform", "skip", "grpo"]
FALLBACKS: tuple[Fallback, ...] = ("uniform", "skip", "grpo")
"""What a policy does when it cannot name a step (``fallback`` option of ``self``, ``oracle``).

- ``uniform``: reset at a uniformly random thought, as RRPO would.
- ``skip``: no reset group for this seed; the episode is smaller by ``M`` rollouts.
- ``grpo``: no reset group either, but the base group grows by ``M`` rollouts from the
  prompt, the seed itself and ``M - 1`` fresh ones, so the episode trains on as many rollouts
  as with the reset, as plain GRPO. The seed joins because it is an ordinary rollout from
  the prompt; leaving it out would tilt the base group towards correct rollouts.

Every fallback is recorded in ``ResetDecision.fallback`` and counted by the
``reset/policy_fallback/<kind>`` metrics.
"""


def _fall_back(context: ResetContext, decision: ResetDecision, fallback: Fallback) -> ResetDecision:
    """The decision after a failed localisation: a uniform index, or no reset."""
    index = int(context.rng.integers(1, context.seed_length + 1)) if fallback == "uniform" else None
    return replace(decision, reset_index=index, fallback=fallback)


def _check_fallback(fallback: str) -> None:
    if fallback not in FALLBACKS:
        raise ThoughtMDPError(f"fallback must be 'uniform', 'skip' or 'grpo', got {fallback!r}")


class OracleReset(ResetPolicy):
    """Reset at the task's first wrong thought (``first_error_step``).

    Args:
        fallback: What to do when the task finds no wrong thought in a failed chain (e.g. it
            was truncated before answering): ``"uniform"``, ``"skip"`` or ``"grpo"`` (see
            :data:`FALLBACKS`).
    """

    name = "oracle"
    requires_step_oracle = True

    def __init__(self, fallback: Fallback = "uniform") -> None:
        _check_fallback(fallback)
        self.fallback = fallback

    async def decide(self, context: ResetContext) -> ResetDecision:
        """The oracle's index, or the fallback when it has none."""
        index = context.task.first_error_step(context.seed_trajectory)
        if index is not None and 1 <= index <= context.seed_length:
            return ResetDecision(index, self.name, parse_status="ok")
        decision = ResetDecision(None, self.name, parse_status="unparsable")
        return _fall_back(context, decision, self.fallback)


class SelfLocalization(ResetPolicy):
    r"""SRPO: the policy reads its failed chain and names the first wrong step as ``\boxed{N}``.

    An answer fails when it holds no boxed number (``unparsable``), a number outside
    ``1..H_s`` (``out_of_range``), or a bare number equal to the chain's own final answer or
    the reference answer (``ambiguous``: the model may have boxed the answer, not a step;
    writing "step N" beside it, or ``\boxed{Step N}``, settles it). A failed answer takes the
    ``fallback``.

    The default fallback stays ``"uniform"``: a localisation that fails still yields a reset
    group of ``M`` suffixes at the same cost, so failures do not shrink the batch or change
    its shape, and on a model that localises well they are rare. The price is that SRPO
    silently drifts towards RRPO when they are not rare, so every fallback is recorded and
    counted (``reset/policy_fallback_rate``, ``reset/localizer_parse_fail_rate``) and the
    actor logs a warning when their share over its recent seed chains passes
    ``actor.fallback_warn_rate`` (0.2 by default). Choose ``"grpo"`` to train the prompt as
    GRPO instead, or ``"skip"`` to drop the reset group.

    Args:
        fallback: For a failed answer: ``"uniform"``, ``"skip"`` or ``"grpo"`` (see
            :data:`FALLBACKS`).
        template: Localiser prompt with ``{question}``, ``{steps}``, ``{num_steps}``;
            ``None`` asks the task (:meth:`VerifiableTask.render_localizer_prompt`).
        temperature: Sampling temperature of the localiser (0 = greedy).
        max_tokens: Longest localiser answer.
        check_answer_echo: Treat a bare boxed number equal to the chain's or the reference
            final answer as ``ambiguous``; turn off for tasks whose answers are small step-like
            integers and a prompt that keeps them apart.
    """

    name = "self"

    def __init__(
        self,
        fallback: Fallback = "uniform",
        template: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        check_answer_echo: bool = True,
    ) -> None:
        _check_fallback(fallback)
        self.fallback = fallback
        self.template = template
        self.check_answer_echo = check_answer_echo
        self.sampling = SamplingParams(
            temperature=temperature, top_p=1.0, max_tokens=max_tokens, stop=()
        )

    async def decide(self, context: ResetContext) -> ResetDecision:
        """Ask the backend; parse its last boxed step number."""
        problem = context.task.get_problem(context.seed_trajectory.problem_id)
        thoughts = [t.text for t in context.seed_trajectory.all_thoughts]
        if self.template is None:
            prompt = context.task.render_localizer_prompt(problem, thoughts)
        else:
            prompt = render_localizer_prompt(problem.question, thoughts, self.template)
        seed = int(context.rng.integers(2**31))
        completion = await context.backend.complete(
            context.render_prompt(prompt), replace(self.sampling, seed=seed)
        )
        answers = _final_answers(problem.answer, thoughts) if self.check_answer_echo else ()
        index, status = parse_step_index(completion.text, context.seed_length, answers)
        decision = ResetDecision(index, self.name, completion.text, status)
        return decision if status == "ok" else _fall_back(context, decision, self.fallback)


def _final_answers(reference: str, thoughts: list[str]) -> tuple[str, ...]:
    """The reference answer and the chain's own boxed answer, when there are any."""
    own = last_boxed(thoughts[-1]) if thoughts else None
    return tuple(a for a in (reference, own) if a)


Statistic = Literal["mean", "min"]


class LeastConfidentReset(ResetPolicy):
    """Reset at the thought the policy was least sure of, from its behaviour log-probabilities.

    Each thought is scored by ``statistic`` over the log-probabilities of its sampled tokens,
    leaving out the last (stop) token when there is more than one: a near-certain
    ``</thought>`` would dilute short thoughts. The lowest score wins, the earliest on a tie.
    It needs no model call.

    Args:
        statistic: ``"mean"`` (mean token log-probability) or ``"min"`` (the least likely
            token).
    """

    name = "least_confident"

    def __init__(self, statistic: Statistic = "mean") -> None:
        if statistic not in ("mean", "min"):
            raise ThoughtMDPError(f"statistic must be 'mean' or 'min', got {statistic!r}")
        self.statistic = statistic

    async def decide(self, context: ResetContext) -> ResetDecision:
        """The 1-based index of the first thought with the lowest score.

        Raises:
            ThoughtMDPError: If a thought of the seed chain has no log-probabilities.
        """
        scores = []
        for index, thought in enumerate(context.seed_trajectory.all_thoughts, start=1):
            if not thought.logprobs:
                raise ThoughtMDPError(
                    f"reset policy {self.name!r} needs log-probabilities, but thought {index} "
                    "of the seed chain has none (does the backend record them?)"
                )
            logprobs = thought.logprobs[:-1] if len(thought.logprobs) > 1 else thought.logprobs
            scores.append(min(logprobs) if self.statistic == "min" else float(np.mean(logprobs)))
        return ResetDecision(scores.index(min(scores)) + 1, self.name, parse_status="ok")


RESET_POLICIES: Registry[type[ResetPolicy] | Any] = Registry(
    "reset policy", entry_point_group="thoughtmdp.reset_policies"
)
"""All registered reset policies (built-ins, :func:`register_reset_policy`, entry points)."""

for _policy in (NoReset, UniformReset, OracleReset, SelfLocalization, LeastConfidentReset):
    RESET_POLICIES.register(_policy.name, _policy)


def register_reset_policy(name: str, target: Any = None) -> Any:
    """Register a :class:`ResetPolicy` factory under ``name`` (call or class decorator).

    >>> @register_reset_policy("last")
    ... class LastThought(ResetPolicy):
    ...     async def decide(self, context):
    ...         return ResetDecision(context.seed_length, "last")
    >>> type(make_reset_policy("last")).__name__
    'LastThought'
    """
    return RESET_POLICIES.register(name, target)


def make_reset_policy(name: str, **kwargs: Any) -> ResetPolicy:
    """Build the reset policy registered as ``name``.

    Raises:
        UnknownNameError: If ``name`` is not registered (the message lists the known ones).
        ThoughtMDPError: If the options do not fit the factory, or it does not build a
            :class:`ResetPolicy`.
    """
    factory = RESET_POLICIES.get(name)
    try:
        policy = factory(**kwargs)
    except TypeError as exc:
        raise ThoughtMDPError(
            f"reset policy {name!r} does not take the options {sorted(kwargs)}: {exc}"
        ) from None
    if not isinstance(policy, ResetPolicy):
        raise ThoughtMDPError(
            f"reset policy {name!r} built a {type(policy).__name__}, not a ResetPolicy"
        )
    return policy
