"""QATask: benchmark questions graded by answer type (multiple choice, yes/no, math).

Rows come from local ``.jsonl``/``.json``/``.parquet`` files (a glob such as
``data/validation-*.parquet`` reads several, in name order) or from a Hugging Face dataset:
a name on the hub or a folder written by ``save_to_disk`` (both need ``pip install
"thoughtmdp[datasets]"``).
A preset (:mod:`thoughtmdp.envs.math.qa_presets`) sets the fields, options layout, filters and
answer type of one benchmark; explicit arguments win over it.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from thoughtmdp.data import (
    Row,
    dataset_source,
    is_data_file,
    is_saved_dataset,
    load_hf_dataset,
    read_rows,
    require_field,
)
from thoughtmdp.envs.math.answer_types import ANSWER_TYPES, Choice, make_verifier
from thoughtmdp.envs.math.qa_presets import QAPreset, get_preset
from thoughtmdp.errors import DatasetFieldError
from thoughtmdp.mdp.boxed import last_boxed
from thoughtmdp.mdp.prompts import ROLLOUT_TEMPLATE
from thoughtmdp.mdp.task import OneSplitTask
from thoughtmdp.types import Problem, Score

logger = logging.getLogger(__name__)

SOLUTION_KEYS = frozenset({"solution"})
r"""Answer fields holding worked solutions: rows whose solution has no ``\boxed{}`` are skipped."""

INSTRUCTIONS = {
    "multiple_choice": "Answer with the letter of the correct option.",
    "yes_no": "Answer yes or no.",
}
"""A line appended to the question, by answer type."""

METADATA_MAX_CHARS = 200


class QATask(OneSplitTask):
    r"""Questions with a short verifiable answer, read from files or a dataset.

    Multiple-choice questions are shown with their options (``A. text``) and an instruction
    to answer with a letter; yes/no questions with an instruction to answer yes or no. The
    final thought's ``\boxed{}`` (or a close form, see :mod:`thoughtmdp.envs.math.answer_types`) is
    graded. Problem ids are ``"<split>/<index>"``, counting the problems kept; the payload
    holds the options, the row's line and its scalar metadata (nested ones as ``a.b``).

    Args:
        data: Data file(s) (a path or a glob), a Hugging Face dataset name, or a folder
            written by ``save_to_disk`` (a ``Dataset``, or a ``DatasetDict`` holding ``split``).
        preset: A benchmark layout (see :data:`~thoughtmdp.envs.math.qa_presets.PRESETS`).
        answer_type: ``"multiple_choice"``, ``"yes_no"``, ``"math"`` or a registered type;
            required without a preset.
        question_key: Field of the question (default: the preset's, else ``"question"``).
        answer_key: Field of the gold answer (default: the preset's, else ``"answer"``).
        choices_key: Field of the options (default: the preset's, else ``"choices"``).
        filters: Dotted field -> accepted value(s); replaces the preset's filters.
        split: Split name of problem ids, and the split loaded from a dataset.
        limit: Keep at most this many problems.
        verifier_options: Passed to the verifier (``timeout``, ``num_workers`` for math).
        prompt_template: Rollout template with a ``{question}`` field.

    Raises:
        ValueError: Without an answer type, with a bad ``limit``, or when no row is usable.
        UnknownNameError: For an unknown preset or answer type.
        DatasetFieldError: If a row lacks a field (the message names the file or dataset
            and split, the line or record, and the field).
        FileNotFoundError: If ``data`` names files that do not exist.

    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "q.jsonl"
    >>> _ = path.write_text(json.dumps({"question": "Is ice cold?", "answer": True}))
    >>> task = QATask(path, answer_type="yes_no")
    >>> problem = task.problems("test")[0]
    >>> problem.answer, task.score(problem, [r"\boxed{Yes}"]).reward
    ('yes', 1.0)
    """

    name = "qa"

    def __init__(
        self,
        data: str | os.PathLike[str],
        *,
        preset: str | None = None,
        answer_type: str | None = None,
        question_key: str | None = None,
        answer_key: str | None = None,
        choices_key: str | None = None,
        filters: Mapping[str, str | Sequence[str]] | None = None,
        split: str | None = None,
        limit: int | None = None,
        verifier_options: Mapping[str, Any] | None = None,
        prompt_template: str = ROLLOUT_TEMPLATE,
    ) -> None:
        super().__init__(prompt_template)
        layout = get_preset(preset) if preset is not None else None
        self.preset = layout
        self.answer_type = answer_type or (layout.answer_type if layout else "")
        if not self.answer_type:
            raise ValueError(
                "QATask needs answer_type= (one of: "
                f"{', '.join(ANSWER_TYPES.names())}) or a preset that sets it"
            )
        self.question_key = question_key or (layout.question_key if layout else "question")
        self.answer_key = answer_key or (layout.answer_key if layout else "answer")
        self.choices_key = choices_key or (layout.choices_key if layout else None) or "choices"
        chosen = filters if filters is not None else (layout.filters if layout else {})
        self.filters = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in chosen.items()}
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be a positive number of problems or None, got {limit}")
        self.data = os.fspath(data)
        self.splits = (split or (layout.split if layout else "test"),)
        self.verifier = make_verifier(self.answer_type, **dict(verifier_options or {}))
        self.loaded = self._load(limit)

    def score(self, problem: Problem, thoughts: Sequence[str]) -> Score:
        """1.0 when the final thought's answer matches the gold answer.

        ``info`` holds ``answer``, ``gold`` and, with a zero reward, ``reason``.
        """
        final = thoughts[-1] if thoughts else ""
        choices = [Choice(*c) for c in problem.payload.get("choices", ())]
        check = self.verifier.check(final, problem.answer, choices)
        info: dict[str, Any] = {"answer": check.answer, "gold": problem.answer}
        if check.correct:
            return Score(1.0, info)
        return Score(0.0, {**info, "reason": check.reason})

    def close(self) -> None:
        """Stop the verifier's worker processes, if it has any."""
        self.verifier.close()

    def _load(self, limit: int | None) -> list[Problem]:
        problems: list[Problem] = []
        unusable: list[str] = []
        for source, row in load_rows(self.data, self.splits[0]):
            if limit is not None and len(problems) >= limit:
                break
            if not self._selected(source, row):
                continue
            problem = self._problem(source, row, len(problems))
            if problem is None:
                unusable.append(f"{source}, line {row.line}")
            else:
                problems.append(problem)
        if unusable:
            logger.warning(
                "%s: skipped %d rows without options or a usable gold answer (first: %s)",
                self.data,
                len(unusable),
                unusable[0],
            )
        if not problems:
            raise ValueError(
                f"{self.data} holds no usable {self.answer_type} questions; {self._hint()}"
            )
        return problems

    def _selected(self, source: str, row: Row) -> bool:
        for key, accepted in self.filters.items():
            value = field_value(row.data, key, source=source, line=row.line, hint=self._hint())
            if str(value).casefold() not in {a.casefold() for a in accepted}:
                return False
        return True

    def _problem(self, source: str, row: Row, index: int) -> Problem | None:
        hint = self._hint()
        question = str(
            require_field(row.data, self.question_key, path=source, line=row.line, hint=hint)
        )
        choices: list[Choice] = []
        if self.answer_type == "multiple_choice":
            raw = require_field(row.data, self.choices_key, path=source, line=row.line, hint=hint)
            choices = parse_choices(raw, source, row.line)
            if not choices:
                return None
        gold = require_field(row.data, self.answer_key, path=source, line=row.line, hint=hint)
        if self.answer_key in SOLUTION_KEYS and last_boxed(str(gold)) is None:
            return None
        answer = self.verifier.normalize_gold(gold, choices)
        if answer is None:
            return None
        split = self.splits[0]
        payload = {**_metadata(row.data, self._used_keys()), "line": row.line}
        if choices:
            payload["choices"] = tuple(tuple(c) for c in choices)
        return Problem(
            id=f"{split}/{index}",
            question=render_question(question, choices, self.answer_type),
            answer=answer,
            split=split,
            payload=payload,
        )

    def _used_keys(self) -> set[str]:
        return {self.question_key, self.answer_key, self.choices_key}

    def _hint(self) -> str:
        layout: QAPreset | None = self.preset
        if layout is None:
            return "choose fields with question_key=/answer_key=/choices_key="
        return f"preset {layout.name!r} expects {layout.expects}"


def load_rows(data: str, split: str) -> list[tuple[str, Row]]:
    """The rows of a data file, of every file a glob matches, or of a dataset split.

    Args:
        data: A path, a glob (``*``, ``?``, ``[``), a Hugging Face dataset name or a folder
            written by ``save_to_disk``.
        split: The split loaded from a dataset.

    Returns:
        ``(source, row)`` pairs in order; ``source`` names the file for messages.

    Raises:
        FileNotFoundError: If a glob matches nothing or ``data`` is a folder of another kind.
    """
    if any(c in data for c in "*?["):
        paths = sorted(glob.glob(os.path.expanduser(data), recursive=True))
        if not paths:
            raise FileNotFoundError(f"no data files match {data!r}")
        return [(path, row) for path in paths for row in read_rows(path)]
    if not is_saved_dataset(data) and os.path.isdir(data):
        raise FileNotFoundError(
            f"{data} is a folder but not one written by save_to_disk; name its data files, "
            f"e.g. {os.path.join(data, '*.parquet')}"
        )
    if is_data_file(data) or os.path.isfile(data):
        return [(data, row) for row in read_rows(data)]
    source = dataset_source(data, split)
    return [(source, row) for row in load_hf_dataset(data, split)]


def field_value(row: Mapping[str, Any], key: str, source: str, line: int, hint: str = "") -> Any:
    """``row[key]`` for a dotted key (``details.level``), with an error naming what is missing.

    Raises:
        DatasetFieldError: If a part of the key is missing or null.

    >>> field_value({"details": {"level": "L3"}}, "details.level", "f.jsonl", 1)
    'L3'
    """
    value: Any = row
    for depth, part in enumerate(key.split(".")):
        name = ".".join(key.split(".")[: depth + 1])
        if not isinstance(value, Mapping):
            raise DatasetFieldError(f"{source}, line {line}: field {name!r} is not an object")
        value = require_field(value, part, path=source, line=line, hint=hint)
    return value


def parse_choices(raw: Any, source: str, line: int) -> list[Choice]:
    """Options in any of the layouts :class:`~thoughtmdp.envs.math.qa_presets.QAPreset` lists.

    Raises:
        DatasetFieldError: If ``raw`` has none of those layouts.

    >>> parse_choices({"label": ["A", "B"], "text": ["no", "yes"]}, "f", 1)
    [Choice(label='A', text='no'), Choice(label='B', text='yes')]
    >>> parse_choices(["red", "blue"], "f", 1)[1]
    Choice(label='B', text='blue')
    """
    if isinstance(raw, Mapping) and {"label", "text"} <= set(raw):
        labels, texts = list(raw["label"] or []), list(raw["text"] or [])
        if len(labels) == len(texts):
            return [Choice(str(a), str(b)) for a, b in zip(labels, texts, strict=True)]
    elif isinstance(raw, Mapping):
        return [Choice(str(k), str(v)) for k, v in raw.items()]
    elif isinstance(raw, list | tuple) and all(isinstance(x, str) for x in raw):
        return [Choice(chr(ord("A") + i), text) for i, text in enumerate(raw)]
    elif isinstance(raw, list | tuple) and all(
        isinstance(x, Mapping) and {"label", "text"} <= set(x) for x in raw
    ):
        return [Choice(str(x["label"]), str(x["text"])) for x in raw]
    raise DatasetFieldError(
        f"{source}, line {line}: options must be {{'label': [...], 'text': [...]}}, a list of "
        f"texts, a list of {{'label', 'text'}} objects or a {{label: text}} mapping; got {raw!r}"
    )


def render_question(question: str, choices: Sequence[Choice], answer_type: str) -> str:
    """The question as the model sees it: with its options and how to answer.

    >>> options = [Choice("A", "x"), Choice("B", "y")]
    >>> print(render_question("Pick one.", options, "multiple_choice"))
    Pick one.
    <BLANKLINE>
    A. x
    B. y
    <BLANKLINE>
    Answer with the letter of the correct option.
    """
    parts = [question.strip()]
    if choices:
        parts.append("\n".join(f"{c.label}. {c.text}" for c in choices))
    if answer_type in INSTRUCTIONS:
        parts.append(INSTRUCTIONS[answer_type])
    return "\n\n".join(parts)


def _metadata(row: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, value in row.items():
        if key in used:
            continue
        if _is_short(value):
            meta[key] = value
        elif isinstance(value, Mapping):
            meta.update({f"{key}.{k}": v for k, v in value.items() if _is_short(v)})
    return meta


def _is_short(value: Any) -> bool:
    """A scalar worth keeping with the problem (long texts such as prompts are not)."""
    if isinstance(value, str):
        return len(value) <= METADATA_MAX_CHARS
    return isinstance(value, int | float | bool)
