r"""MathTask: competition math problems from a file or dataset, graded by math-verify.

The reward is 1.0 when the last ``\boxed{}`` of the final thought is mathematically
equivalent to the gold answer. Verification runs in worker processes under a time limit
(see :mod:`thoughtmdp.envs.math.verifier`), so a pathological expression costs a zero
reward, never a stuck or crashed caller. The workers are fresh interpreters that never
import the caller's main module, so a script needs no ``if __name__ == "__main__":``. A
verifier that cannot run at all raises :class:`~thoughtmdp.errors.VerifierUnavailable`
instead of scoring answers as wrong.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from typing import Any

from thoughtmdp.data import (
    Row,
    dataset_source,
    is_data_file,
    load_hf_dataset,
    read_rows,
    require_field,
)
from thoughtmdp.errors import DependencyNotInstalled, VerifierTimeout, VerifierUnavailable
from thoughtmdp.isolation import WorkerCrashed, WorkerPool
from thoughtmdp.mdp.boxed import last_boxed
from thoughtmdp.mdp.prompts import ROLLOUT_TEMPLATE
from thoughtmdp.mdp.task import OneSplitTask
from thoughtmdp.types import Problem, Score

logger = logging.getLogger(__name__)

PRESETS: dict[str, tuple[str, str]] = {
    "numinamath": ("problem", "solution"),
    "math": ("problem", "solution"),
    "acereason": ("problem", "answer"),
}
"""Dataset layouts: preset name -> (question field, answer field)."""

SOLUTION_KEYS = frozenset({"solution"})
"""Answer fields holding worked solutions: only their last ``\\boxed{}`` counts as the answer."""

VERIFIER = "thoughtmdp.envs.math.verifier:check"
VERIFIER_SETUP = "thoughtmdp.envs.math.verifier:prepare"
VERIFIER_NAME = f"math-verify ({VERIFIER})"
KILL_GRACE = 1.0
"""Seconds past ``timeout`` before a worker stuck outside Python (e.g. huge integer powers)
is killed; within ``timeout`` the worker stops the check by itself and stays alive."""


class MathTask(OneSplitTask):
    r"""Math problems with a final answer, read from a JSONL/JSON/Parquet file or a dataset.

    A dataset is a Hugging Face hub name or a folder written by ``save_to_disk``
    (``datasets`` needed: ``pip install "thoughtmdp[datasets]"``).

    Gold answers may be bare (``\frac{1}{2}``), in ``$...$``, or a worked solution whose
    last ``\boxed{}`` holds the answer. Rows whose gold answer is empty, or whose
    ``solution`` field (see :data:`SOLUTION_KEYS`) has no ``\boxed{}``, such as proofs, are
    skipped with a logged warning. Problem ids are
    ``"<split>/<index>"``, counting the problems kept. Metadata fields of a row (strings and
    numbers, such as ``level`` and ``type`` of MATH) and its ``line`` land in the payload.

    Args:
        data: A ``.jsonl``/``.json``/``.parquet`` file, or a Hugging Face dataset: a
            hub name or a ``save_to_disk`` folder (used when ``data`` is not an existing
            file and has no data file ending).
        question_key: Field of the problem statement (default ``"problem"``).
        answer_key: Field of the gold answer (default ``"answer"``).
        split: The split's name; for a dataset also the split to load (a saved
            ``DatasetDict`` must have it; a saved ``Dataset`` is read whole).
        preset: ``"numinamath"``, ``"math"`` or ``"acereason"``: sets the two keys for
            that dataset's layout; explicit keys win.
        limit: Keep at most this many problems.
        timeout: Seconds one verification may take; past it the reward is 0.
        num_workers: Verifier processes, so that many threads can score at once.
        prompt_template: Rollout template with a ``{question}`` field.

    Raises:
        ValueError: On an unknown preset, a bad ``limit``/``timeout``/``num_workers``, or
            data without a single usable problem.
        DatasetFieldError: If a row lacks a field (the message names the file or dataset
            and split, the line or record, and the field).
        DependencyNotInstalled: If math-verify, or a reader the data needs (``datasets``,
            ``pyarrow``), is missing.
    """

    name = "math"

    def __init__(
        self,
        data: str | os.PathLike[str],
        *,
        question_key: str | None = None,
        answer_key: str | None = None,
        split: str = "train",
        preset: str | None = None,
        limit: int | None = None,
        timeout: float = 5.0,
        num_workers: int = 1,
        prompt_template: str = ROLLOUT_TEMPLATE,
    ) -> None:
        super().__init__(prompt_template)
        if importlib.util.find_spec("math_verify") is None:
            raise DependencyNotInstalled(
                "MathTask needs math-verify, which is not installed; install it with: "
                'pip install "math-verify>=0.7"'
            )
        default_question, default_answer = _preset_keys(preset)
        self.question_key = question_key or default_question
        self.answer_key = answer_key or default_answer
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be a positive number of problems or None, got {limit}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        self.data = os.fspath(data)
        self.source = self.data  # how messages name the data; a dataset adds its split
        self.splits = (split,)
        self.timeout = timeout
        self.loaded = self._load(split, limit)
        self._verifier = verifier_pool(timeout, num_workers)

    def score(self, problem: Problem, thoughts: Sequence[str]) -> Score:
        r"""1.0 when the last ``\boxed{}`` of the final thought matches the gold answer.

        ``info`` holds ``answer``, ``gold`` and, with a zero reward, ``reason``: ``"no boxed
        answer"``, ``"wrong answer"``, ``"timeout"``, ``"could not parse the answer"``,
        ``"could not parse the gold answer"`` or ``"verifier error: ..."`` (this answer
        made math-verify fail, or crashed its worker twice while a known-good check passes).

        Raises:
            VerifierUnavailable: If no verifier process can start, or the verifier keeps
                crashing even on a known-good check (a setup problem, not a property of the
                answer).
        """
        final = thoughts[-1] if thoughts else ""
        answer = last_boxed(final)
        gold = gold_answer(problem.answer)
        info: dict[str, Any] = {"answer": answer, "gold": gold}
        if answer is None:
            return Score(0.0, {**info, "reason": "no boxed answer"})
        correct, reason = verify_in(self._verifier, answer, gold, timeout=self.timeout)
        if correct:
            return Score(1.0, info)
        return Score(0.0, {**info, "reason": reason})

    def close(self) -> None:
        """Stop the verifier processes; a later :meth:`score` starts them again."""
        self._verifier.close()

    def _load(self, split: str, limit: int | None) -> list[Problem]:
        if is_data_file(self.data) or os.path.isfile(self.data):
            rows = read_rows(self.data)
        else:
            self.source = dataset_source(self.data, split)
            rows = load_hf_dataset(self.data, split)
        problems: list[Problem] = []
        skipped: list[int] = []
        for row in rows:
            if limit is not None and len(problems) >= limit:
                break
            problem = self._problem(row, split, len(problems))
            if problem is None:
                skipped.append(row.line)
            else:
                problems.append(problem)
        if skipped:
            logger.warning(
                "%s: skipped %d rows without a usable gold answer in field %r (first: line %d)",
                self.data,
                len(skipped),
                self.answer_key,
                skipped[0],
            )
        if not problems:
            raise ValueError(f"{self.data} holds no problems with a usable gold answer")
        return problems

    def _problem(self, row: Row, split: str, index: int) -> Problem | None:
        hint = "choose fields with question_key=/answer_key= or a preset"
        question = require_field(
            row.data, self.question_key, path=self.source, line=row.line, hint=hint
        )
        raw = str(
            require_field(row.data, self.answer_key, path=self.source, line=row.line, hint=hint)
        )
        if self.answer_key in SOLUTION_KEYS and last_boxed(raw) is None:
            return None
        answer = gold_answer(raw)
        if not answer:
            return None
        keys = (self.question_key, self.answer_key)
        meta = {k: v for k, v in row.data.items() if k not in keys and _is_scalar(v)}
        payload = {**meta, "line": row.line}
        return Problem(
            id=f"{split}/{index}",
            question=str(question),
            answer=answer,
            split=split,
            payload=payload,
        )


def gold_answer(text: str) -> str:
    r"""The bare answer held by a gold field.

    That is the content of a worked solution's last ``\boxed{}``, or else the text without
    surrounding ``$...$`` (or ``$$...$$``, ``\(...\)``, ``\[...\]``).

    Args:
        text: A gold answer in any of those forms.

    Returns:
        The answer alone, stripped.

    >>> gold_answer(r"so $x = 2$ and the answer is \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> gold_answer("$x^2+1$")
    'x^2+1'
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        inner = text[len(left) : -len(right)]
        if text.startswith(left) and text.endswith(right) and inner and left not in inner:
            return inner.strip()
    return text


def _preset_keys(preset: str | None) -> tuple[str, str]:
    if preset is None:
        return "problem", "answer"
    if preset not in PRESETS:
        raise ValueError(f"unknown MathTask preset {preset!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[preset]


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def verifier_pool(timeout: float, num_workers: int) -> WorkerPool:
    """Processes running math-verify within ``timeout`` (killed after a grace if stuck)."""
    return WorkerPool(
        VERIFIER,
        num_workers,
        timeout + KILL_GRACE,
        initializer=VERIFIER_SETUP,
        name=VERIFIER_NAME,
    )


def verify_in(pool: WorkerPool, answer: str, gold: str, timeout: float) -> tuple[bool, str | None]:
    """``(correct, reason)`` from a verifier pool.

    What the answer causes is a wrong answer with its reason: a timeout, an exception of
    math-verify, or a worker crash that happens again on a retry while a known-good check
    (``1`` against ``1``) still passes. What the setup causes is raised.

    Raises:
        VerifierUnavailable: If no verifier process can start (``WorkerStartError``), or
            the worker also fails the known-good check after crashing on the answer.
    """
    crash: WorkerCrashed | None = None
    for _ in range(2):  # a crash gets one retry, in a fresh worker process
        try:
            correct, reason = pool(answer, gold, timeout)
        except VerifierUnavailable:
            raise
        except VerifierTimeout:
            return False, "timeout"
        except WorkerCrashed as exc:
            crash = exc
            continue
        except Exception as exc:  # math-verify failed on this answer: the answer's zero
            return False, f"verifier error: {type(exc).__name__}: {exc}"
        return bool(correct), None if correct else reason
    _check_still_works(pool, timeout, crash)
    return False, f"verifier error: {type(crash).__name__}: {crash}"


def _check_still_works(pool: WorkerPool, timeout: float, crash: Exception | None) -> None:
    """Raise :class:`VerifierUnavailable` unless the pool verifies ``1`` against ``1``."""
    try:
        correct, _ = pool("1", "1", timeout)
    except VerifierUnavailable:
        raise
    except Exception as exc:
        raise VerifierUnavailable(
            f"{VERIFIER_NAME} keeps failing: its worker process crashed twice on an answer "
            f"({crash}) and then failed a check of 1 against 1 ({type(exc).__name__}: {exc})"
        ) from exc
    if not correct:
        raise VerifierUnavailable(
            f"{VERIFIER_NAME} keeps failing: its worker process crashed twice on an answer "
            f"({crash}) and then judged 1 and 1 different"
        )
