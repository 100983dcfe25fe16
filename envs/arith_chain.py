"""ArithChain: procedurally generated multi-step arithmetic with a step oracle."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, overload

import numpy as np

from thoughtmdp.episodes.localization import LOCALIZER_TEMPLATE
from thoughtmdp.mdp.boxed import last_boxed
from thoughtmdp.mdp.prompts import ROLLOUT_TEMPLATE
from thoughtmdp.mdp.task import VerifiableTask
from thoughtmdp.types import Problem, Score, Trajectory

OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
CLAIM = re.compile(r"=\s*(-?\d+)")
TEST_BUCKETS = 10  # one question in ten (by a stable hash) belongs to the test split
SPLIT_CODES = {"train": 0, "test": 1}


class ArithChainTask(VerifiableTask):
    """Chains like ``8+6+5``: one operation per thought, the last result boxed.

    Problem ``i`` of a split is a pure function of ``(seed, split, i)``. Splits are disjoint:
    a question belongs to ``test`` when a stable hash of its text falls in one of
    ``TEST_BUCKETS`` buckets, otherwise to ``train``. Every problem knows its gold
    intermediate results, so :meth:`first_error_step` can point at the first wrong thought.

    Args:
        num_steps: Operations per problem (a problem has ``num_steps + 1`` operands).
        operand_range: Inclusive ``(low, high)`` range of operands.
        operators: Which of ``+ - *`` may appear.
        seed: Seed of the generator.
        size: Number of train problems.
        test_size: Number of test problems.
        prompt_template: Rollout template with a ``{question}`` field.
        localizer_template: Self-localisation template (``{question}``, ``{steps}``,
            ``{num_steps}``).
    """

    name = "arith_chain"
    has_step_oracle = True

    def __init__(
        self,
        num_steps: int = 3,
        operand_range: tuple[int, int] = (1, 9),
        operators: str = "+-",
        seed: int = 0,
        size: int = 10_000,
        test_size: int = 1_000,
        prompt_template: str = ROLLOUT_TEMPLATE,
        localizer_template: str = LOCALIZER_TEMPLATE,
    ) -> None:
        super().__init__(prompt_template, localizer_template)
        low, high = operand_range
        if num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {num_steps}")
        if not 0 <= low <= high:
            raise ValueError(f"operand_range must satisfy 0 <= low <= high, got {operand_range}")
        if not operators or set(operators) - set(OPERATORS):
            raise ValueError(f"operators must be a non-empty subset of '+-*', got {operators!r}")
        self.num_steps = num_steps
        self.operand_range = (low, high)
        self.operators = operators
        self.seed = seed
        self.sizes = {"train": size, "test": test_size}

    def problems(self, split: str) -> Sequence[Problem]:
        """The ``size`` (train) or ``test_size`` (test) problems of ``split``."""
        if split not in self.sizes:
            raise ValueError(f"ArithChain splits are {self.splits}, not {split!r}")
        return _ProblemList(self, split)

    def get_problem(self, problem_id: str) -> Problem:
        """Rebuild a problem from its id ``"<split>/<index>"``."""
        split, _, index = problem_id.partition("/")
        if split in self.sizes and index.isdigit() and int(index) < self.sizes[split]:
            return self.generate(split, int(index))
        return super().get_problem(problem_id)

    @lru_cache(maxsize=65_536)  # noqa: B019 (tasks live as long as the process)
    def generate(self, split: str, index: int) -> Problem:
        """Problem ``index`` of ``split``."""
        rng = np.random.default_rng([self.seed, SPLIT_CODES[split], index])
        while True:
            operands, ops, extra = self.draw_chain(rng)
            question = str(operands[0]) + "".join(
                f"{op}{b}" for op, b in zip(ops, operands[1:], strict=True)
            )
            if _split_of(question) == split:
                break
        results = _running_results(operands, ops)
        payload = {
            "operands": tuple(operands),
            "ops": tuple(ops),
            "results": tuple(results),
            **extra,
        }
        return Problem(
            id=f"{split}/{index}",
            question=question,
            answer=str(results[-1]),
            split=split,
            payload=payload,
        )

    def draw_chain(self, rng: np.random.Generator) -> tuple[list[int], list[str], dict[str, Any]]:
        """Operands, operators and extra payload of one candidate problem.

        Subclasses change how chains look by overriding this; the split, the question text
        and the gold results are derived from what it returns.
        """
        low, high = self.operand_range
        operands = [int(x) for x in rng.integers(low, high + 1, self.num_steps + 1)]
        picks = rng.integers(len(self.operators), size=self.num_steps)
        return operands, [self.operators[int(k)] for k in picks], {}

    def score(self, problem: Problem, thoughts: Sequence[str]) -> Score:
        r"""1.0 when the final thought holds exactly one ``\boxed{}`` equal to the gold result."""
        final = thoughts[-1] if thoughts else ""
        answer = last_boxed(final)
        format_ok = final.count("\\boxed{") == 1
        correct = format_ok and answer is not None and answer.strip() == problem.answer
        info = {"answer": answer, "gold": problem.answer, "format_ok": format_ok}
        return Score(1.0 if correct else 0.0, info)

    def first_error_step(self, trajectory: Trajectory) -> int | None:
        """1-based index of the first thought that claims a wrong result.

        Thought ``k``'s ``= N`` claims are matched, in order, to the gold intermediate
        results (one operation per thought); a boxed answer is matched to the final result.
        Returns ``None`` when no thought makes a wrong claim.
        """
        gold = self.get_problem(trajectory.problem_id).payload["results"]
        step = 0
        for k, thought in enumerate(trajectory.all_thoughts, start=1):
            for claim in CLAIM.findall(thought.text):
                if int(claim) != gold[min(step, len(gold) - 1)]:
                    return k
                step += 1
            boxed = last_boxed(thought.text)
            if boxed is not None and boxed.strip() != str(gold[-1]):
                return k
        return None


def reference_thoughts(
    problem: Problem, error_rate: float = 0.0, rng: np.random.Generator | None = None
) -> list[str]:
    r"""A whole chain for ``problem``, built with :func:`next_reference_thought`.

    >>> task = ArithChainTask(num_steps=2, seed=0)
    >>> reference_thoughts(task.generate("train", 0))
    ['8+6=14', '14+5=19 \\boxed{19}']
    """
    rng = rng if rng is not None else np.random.default_rng()
    thoughts: list[str] = []
    while not thoughts or last_boxed(thoughts[-1]) is None:
        thoughts.append(next_reference_thought(problem, thoughts, error_rate=error_rate, rng=rng))
    return thoughts


def next_reference_thought(
    problem: Problem,
    thoughts: Sequence[str],
    error_rate: float = 0.0,
    rng: np.random.Generator | None = None,
) -> str:
    r"""The next step of a scripted solver that continues from the thoughts so far.

    It applies the next operation to the last claimed result (so earlier mistakes
    propagate, as a model's would) and is off by 1 to 3 with probability ``error_rate``.
    The step performing the last operation also boxes its result.

    >>> problem = ArithChainTask(num_steps=2, seed=0).generate("train", 0)
    >>> next_reference_thought(problem, ["8+6=15"])
    '15+5=20 \\boxed{20}'
    """
    rng = rng if rng is not None else np.random.default_rng()
    operands, ops = problem.payload["operands"], problem.payload["ops"]
    claims = [int(c) for t in thoughts for c in CLAIM.findall(t)]
    value = claims[-1] if claims else operands[0]
    step = min(len(thoughts), len(ops) - 1)
    result = OPERATORS[ops[step]](value, operands[step + 1])
    if error_rate > 0 and rng.random() < error_rate:
        result += int(rng.choice([-3, -2, -1, 1, 2, 3]))
    thought = f"{value}{ops[step]}{operands[step + 1]}={result}"
    return thought + f" \\boxed{{{result}}}" if step == len(ops) - 1 else thought


def _running_results(operands: list[int], ops: list[str]) -> list[int]:
    value, results = operands[0], []
    for op, b in zip(ops, operands[1:], strict=True):
        value = OPERATORS[op](value, b)
        results.append(value)
    return results


def _split_of(question: str) -> str:
    return "test" if zlib.crc32(question.encode()) % TEST_BUCKETS == 0 else "train"


class _ProblemList(Sequence[Problem]):
    """A lazy, indexable view of one split."""

    def __init__(self, task: ArithChainTask, split: str) -> None:
        self.task, self.split = task, split

    def __len__(self) -> int:
        return self.task.sizes[self.split]

    @overload
    def __getitem__(self, index: int) -> Problem: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Problem]: ...

    def __getitem__(self, index: int | slice) -> Problem | Sequence[Problem]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"problem index {index} out of range for {len(self)} problems")
        return self.task.generate(self.split, index)
