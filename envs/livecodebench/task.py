"""LiveCodeBenchTask: competitive programming problems, graded by running the program.

The model reasons in thoughts like in every task; the chain ends with the thought that holds
a complete fenced code block, and the program is the text between the last two fence lines
of that thought (as ``lcb_runner`` extracts it). The reward is the share of the problem's
**training** tests the program passes, run in the sandbox of
:mod:`thoughtmdp.envs.sandbox.sandbox`; :meth:`LiveCodeBenchTask.evaluate` also runs the
**held-out** tests. Tests never decide anything step by step, so there is no step oracle.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from thoughtmdp.envs.livecodebench.data import RELEASE_ENDS
from thoughtmdp.envs.livecodebench.grading import ProgramResult, Verdict
from thoughtmdp.envs.livecodebench.judge import judge
from thoughtmdp.envs.livecodebench.problems import (
    LCBProblem,
    filter_problems,
    load_problems,
    split_tests,
)
from thoughtmdp.envs.livecodebench.programs import FENCE, extract_code
from thoughtmdp.envs.sandbox.sandbox import Sandbox, SandboxConfig
from thoughtmdp.mdp.task import OneSplitTask
from thoughtmdp.types import Problem, Score

CODE_ROLLOUT_TEMPLATE = (
    "Solve the programming problem below, reasoning in small steps with exactly one step "
    "per thought.\n"
    "A thought is one move (an observation, an idea for the algorithm, a check on an "
    "example) that builds on the earlier thoughts; skip filler.\n"
    "Finish every thought with </thought>.\n"
    "Write the program only in the last thought: one complete Python solution in a "
    "```python fenced block. That thought ends the chain.\n\n"
    "{question}"
)
"""Default rollout prompt; ``{question}`` is replaced by :func:`lcb_question`."""


def lcb_question(problem: LCBProblem) -> str:
    """The problem in LiveCodeBench's prompt layout: statement, then the expected format.

    Args:
        problem: The problem.

    Returns:
        ``### Question:`` with the statement and ``### Format:`` with either the starter
        code to complete or the instruction to read stdin and write stdout.
    """
    text = f"### Question:\n{problem.content}\n\n"
    if problem.starter_code:
        text += "### Format: Complete the starter code below; put the whole solution in one "
        text += f"fenced Python block.\n```python\n{problem.starter_code}\n```\n"
    else:
        text += "### Format: Read the input from stdin and print the answer to stdout (do not "
        text += "hard-code the examples); put the whole program in one fenced Python block.\n"
        text += "```python\n# YOUR CODE HERE\n```\n"
    return text


def has_code_block(text: str) -> bool:
    r"""Whether ``text`` holds a complete fenced block (at least two fence lines).

    >>> has_code_block("```python\nprint(1)\n```"), has_code_block("```python\nprint(1)")
    (True, False)
    """
    return sum(FENCE in line for line in text.split("\n")) >= 2


@dataclass(frozen=True)
class CodeEvaluation:
    """A program's verdicts on a problem's training and held-out tests.

    Attributes:
        code: The extracted program, or ``None`` when the answer had no code block.
        train: Verdicts on the training tests (every test run).
        heldout: Verdicts on the held-out tests (every test run).
    """

    code: str | None
    train: ProgramResult
    heldout: ProgramResult

    @property
    def reward(self) -> float:
        """Share of training tests passed."""
        return self.train.fraction

    @property
    def heldout_passed(self) -> bool:
        """Every held-out test passed (``False`` when there are none)."""
        return self.heldout.all_passed

    def info(self) -> dict[str, Any]:
        """Score information: counts, verdicts and the sandbox's isolation report."""
        isolation = self.train.isolation or self.heldout.isolation
        return {
            **_summary("train", self.train),
            **_summary("heldout", self.heldout),
            "heldout_passed": self.heldout_passed,
            "isolation": isolation,
        }


def _summary(prefix: str, result: ProgramResult) -> dict[str, Any]:
    failures = [r for r in result.results if r.verdict is not Verdict.PASSED]
    return {
        f"{prefix}_passed": result.passed,
        f"{prefix}_total": result.total,
        f"{prefix}_verdicts": [r.verdict.value for r in result.results],
        f"{prefix}_first_failure": failures[0].message if failures else None,
    }


class LiveCodeBenchTask(OneSplitTask):
    """LiveCodeBench code generation, graded by tests in a sandbox (reward = tests passed).

    Args:
        data: A ``code_generation_lite`` file (``.jsonl``/``.json``/``.parquet``) or a
            Hugging Face dataset name.
        release_version: ``release_vN``, ``vN``, ``vA_vB`` or ``release_latest``.
        start_date: Keep contests on or after this date.
        end_date: Keep contests on or before this date.
        difficulty: Keep these difficulties (``easy``/``medium``/``hard``).
        platform: Keep these platforms (``leetcode``/``atcoder``/``codeforces``).
        release_ends: First date after each release version (see ``RELEASE_ENDS``).
        version_field: A row field with each problem's release version, used instead.
        heldout_fraction: Share of each problem's private tests held out of the reward.
        split_seed: Seed of the test split.
        split: The name of the (only) problem split.
        limit: Keep at most this many problems.
        sandbox: A :class:`Sandbox` to share, or a :class:`SandboxConfig` for a new one.
        test_timeout: Seconds per test when the task makes its own sandbox.
        max_concurrency: Programs graded at once when the task makes its own sandbox.
        lcb_compat: Run stdin programs the way ``lcb_runner`` does (see
            :func:`~thoughtmdp.envs.livecodebench.judge.make_job`).
        prompt_template: Rollout template with a ``{question}`` field.

    Raises:
        ValueError: On bad filters, or when no problem is left after filtering.
        DatasetFieldError: If a row is malformed (file, line and field are named).
    """

    name = "livecodebench"

    def __init__(
        self,
        data: str | os.PathLike[str],
        *,
        release_version: str | None = None,
        start_date: str | date | None = None,
        end_date: str | date | None = None,
        difficulty: str | Collection[str] | None = None,
        platform: str | Collection[str] | None = None,
        release_ends: Mapping[int, date] = RELEASE_ENDS,
        version_field: str | None = None,
        heldout_fraction: float = 0.5,
        split_seed: int = 0,
        split: str = "test",
        limit: int | None = None,
        sandbox: Sandbox | SandboxConfig | None = None,
        test_timeout: float = 6.0,
        max_concurrency: int = 2,
        lcb_compat: bool = True,
        prompt_template: str = CODE_ROLLOUT_TEMPLATE,
    ) -> None:
        super().__init__(prompt_template)
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be a positive number of problems or None, got {limit}")
        loaded = filter_problems(
            load_problems(data, version_field=version_field), release_version=release_version,
            start_date=start_date, end_date=end_date, difficulty=difficulty, platform=platform,
            release_ends=release_ends,
        )  # fmt: skip
        if not loaded:
            raise ValueError(f"{os.fspath(data)}: no problem is left after the filters")
        self.splits = (split,)
        self.lcb_compat = lcb_compat
        self.loaded = [
            self._problem(p, split, fraction=heldout_fraction, seed=split_seed)
            for p in loaded[:limit]
        ]
        self._owns_sandbox = not isinstance(sandbox, Sandbox)
        if isinstance(sandbox, Sandbox):
            self.sandbox = sandbox
        else:
            config = sandbox or SandboxConfig(
                test_timeout=test_timeout, max_concurrency=max_concurrency
            )
            self.sandbox = Sandbox(config)

    @staticmethod
    def _problem(lcb: LCBProblem, split: str, fraction: float, seed: int) -> Problem:
        train, heldout = split_tests(lcb, fraction, seed)
        payload = {"lcb": lcb, "train_tests": train, "heldout_tests": heldout}
        return Problem(
            id=lcb.question_id,
            question=lcb_question(lcb),
            answer="",
            split=split,
            payload=payload,
        )

    def is_final(self, thought: str) -> bool:
        """The chain ends with the thought that holds a complete fenced code block."""
        return has_code_block(thought)

    def score(self, problem: Problem, thoughts: Sequence[str]) -> Score:
        """Reward = share of training tests passed by the program in the final thought.

        ``info`` holds ``train_passed``, ``train_total``, ``train_verdicts``,
        ``train_first_failure``, ``isolation`` and, with no program, ``reason``.

        Raises:
            SandboxError: If the sandbox cannot start a child (a setup problem).
        """
        code = extract_code(thoughts[-1]) if thoughts else None
        tests = problem.payload["train_tests"]
        if code is None:
            return Score(0.0, {"reason": "no code block", "train_total": len(tests)})
        func_name = problem.payload["lcb"].func_name
        result = judge(self.sandbox, code, tests, func_name=func_name, lcb_compat=self.lcb_compat)
        info = _summary("train", result)
        info["isolation"] = result.isolation
        return Score(result.fraction, info)

    async def ascore(self, problem: Problem, thoughts: Sequence[str]) -> Score:
        """:meth:`score` on the sandbox's thread pool; the event loop keeps running."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.sandbox.executor, self.score, problem, thoughts)

    def evaluate(self, problem: Problem, code: str | None) -> CodeEvaluation:
        """Run a program on the training and held-out tests of ``problem`` (every test).

        Args:
            problem: One of :meth:`problems`.
            code: The program (for a model answer, :func:`extract_code` of it).

        Returns:
            Both sets of verdicts.
        """
        train, heldout = problem.payload["train_tests"], problem.payload["heldout_tests"]
        if code is None:
            return CodeEvaluation(
                None, ProgramResult((), len(train)), ProgramResult((), len(heldout))
            )
        both = judge(
            self.sandbox,
            code,
            (*train, *heldout),
            func_name=problem.payload["lcb"].func_name,
            lcb_compat=self.lcb_compat,
        )
        first = ProgramResult(both.results[: len(train)], len(train), both.isolation)
        second = ProgramResult(both.results[len(train) :], len(heldout), both.isolation)
        return CodeEvaluation(code, first, second)

    def close(self) -> None:
        """Stop the sandbox's thread pool if the task made the sandbox."""
        if self._owns_sandbox:
            self.sandbox.close()
