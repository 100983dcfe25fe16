"""Auditing self-localisation against a task's step oracle (the paper's Fig. 4 and 6).

For each failed chain the policy names its first wrong step (the SRPO localiser prompt,
:class:`~thoughtmdp.episodes.reset_policies.SelfLocalization`) and the task's
:meth:`~thoughtmdp.VerifiableTask.first_error_step` names the true one. Optionally ``M``
suffixes are resampled from the self-localised reset state, to measure how often a reset
there corrects the chain. Chains and suffixes are rolled out by the evaluation engine
(:class:`~thoughtmdp.evaluation.engine.EvalEngine`); summaries are in
:mod:`thoughtmdp.evaluation.audit_report`.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from thoughtmdp.episodes.metrics import PASS_REWARD, is_clean_prefix
from thoughtmdp.episodes.reset_policies import ResetContext, SelfLocalization
from thoughtmdp.episodes.rollout import SEED_MODULUS
from thoughtmdp.errors import StepOracleUnavailable
from thoughtmdp.evaluation.engine import EvalEngine
from thoughtmdp.types import PrefixState, Problem, ResetRecord, Trajectory


@dataclass(frozen=True)
class AuditSettings:
    """How failed chains are localised and resampled (the engine's settings sample the chains).

    Attributes:
        suffixes: Suffix rollouts from each self-localised reset state (``M``; 0: none).
        localizer_max_tokens: Longest localiser answer.
        localizer_temperature: Temperature of the localiser (0 = greedy).
    """

    suffixes: int = 4
    localizer_max_tokens: int = 512
    localizer_temperature: float = 0.0


@dataclass(frozen=True)
class LocalizationRecord:
    """One failed chain: where the policy and the oracle place the first wrong step.

    Attributes:
        problem_id: The problem.
        sample: Index of the chain among the problem's samples.
        thoughts: The failed chain's thought texts (``H_s`` of them).
        self_index: The step the policy named; ``None`` when its answer named no valid step.
        oracle_index: The task's first wrong step; ``None`` when it finds none.
        parse_status: ``"ok"``, ``"unparsable"``, ``"out_of_range"`` or ``"ambiguous"`` (a bare
            boxed number equal to the answer).
        raw_text: The localiser's answer.
        clean: Whether the prefix kept before ``self_index`` holds no wrong thought
            (``self_index <= oracle_index``); ``None`` without both indices.
        suffix_rewards: Rewards of the suffixes resampled from before ``self_index``.
    """

    problem_id: str
    sample: int
    thoughts: tuple[str, ...]
    self_index: int | None
    oracle_index: int | None
    parse_status: str
    raw_text: str
    clean: bool | None = None
    suffix_rewards: tuple[float, ...] = ()

    @property
    def seed_length(self) -> int:
        """``H_s``: thoughts in the failed chain."""
        return len(self.thoughts)

    @property
    def deviation(self) -> int | None:
        """Self minus oracle step; negative is early (clean prefix), positive overshoots."""
        if self.self_index is None or self.oracle_index is None:
            return None
        return self.self_index - self.oracle_index


@dataclass
class AuditResult:
    """Every chain's outcome.

    Attributes:
        chains: Chains sampled.
        failed: Chains that did not pass.
        records: One per failed chain.
    """

    chains: int = 0
    failed: int = 0
    records: list[LocalizationRecord] = field(default_factory=list)


async def audit_localization(
    engine: EvalEngine, problems: Sequence[Problem], settings: AuditSettings
) -> AuditResult:
    """Sample chains with the engine, localise the failed ones and compare with the oracle.

    Args:
        engine: The policy (sampler and localiser), a task with a step oracle, and how chains
            and suffixes are sampled (``samples`` chains per problem).
        problems: The problems to sample chains for.
        settings: Localiser and suffix settings.

    Returns:
        The counts and one record per failed chain, in problem order.

    Raises:
        StepOracleUnavailable: If the task has no step oracle.
    """
    if not engine.task.has_step_oracle:
        raise StepOracleUnavailable(
            f"task {engine.task.name!r} has no step oracle (first_error_step); the audit needs one"
        )
    localizer = SelfLocalization(
        fallback="skip",
        temperature=settings.localizer_temperature,
        max_tokens=settings.localizer_max_tokens,
    )
    auditor = _Auditor(engine, settings.suffixes, localizer)
    outcomes = await asyncio.gather(*(auditor.chain(p, s) for p, s in engine.jobs(problems)))
    result = AuditResult(chains=len(outcomes))
    for failed, record in outcomes:
        result.failed += failed
        if record is not None:
            result.records.append(record)
    return result


@dataclass
class _Auditor:
    engine: EvalEngine
    suffixes: int
    localizer: SelfLocalization

    def __post_init__(self) -> None:
        self.render_prompt = self.engine.env().chat.render  # the rollouts' chat format

    async def chain(self, problem: Problem, sample: int) -> tuple[bool, LocalizationRecord | None]:
        engine = self.engine
        seed = engine.request_seed(problem.id, sample)
        trajectory = await engine.rollout(problem.id, seed)
        if trajectory.reward >= PASS_REWARD:
            return False, None
        rng = np.random.default_rng(seed)
        context = ResetContext(trajectory, engine.task, engine.backend, rng, self.render_prompt)
        decision = await self.localizer.decide(context)
        oracle = engine.task.first_error_step(trajectory)
        suffixes: tuple[float, ...] = ()
        if decision.reset_index is not None:
            suffixes = await self._suffixes(trajectory, decision.reset_index, seed)
        return True, LocalizationRecord(
            problem_id=problem.id,
            sample=sample,
            thoughts=tuple(t.text for t in trajectory.all_thoughts),
            self_index=decision.reset_index,
            oracle_index=oracle,
            parse_status=decision.parse_status,
            raw_text=decision.raw_text or "",
            clean=is_clean_prefix(ResetRecord(trajectory, decision, oracle)),
            suffix_rewards=suffixes,
        )

    async def _suffixes(
        self, seed_chain: Trajectory, reset_index: int, seed: int
    ) -> tuple[float, ...]:
        start = seed_chain.start
        prefix = PrefixState(
            start.problem_id, start.prompt_token_ids, seed_chain.all_thoughts[: reset_index - 1]
        )
        runs = [self.engine.rollout(prefix, _suffix_seed(seed, j)) for j in range(self.suffixes)]
        return tuple(t.reward for t in await asyncio.gather(*runs))


def _suffix_seed(chain_seed: int, index: int) -> int:
    return zlib.crc32(f"{chain_seed}/suffix/{index}".encode()) % SEED_MODULUS
