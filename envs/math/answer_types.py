r"""Answer verifiers, one per answer type, shared by every question-answering task.

A verifier reads the final thought of a chain and compares the answer it finds with the gold
answer: ``multiple_choice`` (an option label such as ``B``, found as ``\boxed{B}``, ``(B)``,
``B)``, ``B. text`` or the option text itself), ``yes_no`` (yes/no, true/false) and ``math``
(math-verify equivalence, in a worker process under a time limit, as
:class:`~thoughtmdp.envs.math.task.MathTask` grades). Register another with
:func:`register_answer_type`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.mdp.boxed import last_boxed
from thoughtmdp.registry import Registry


class Choice(NamedTuple):
    """One option of a multiple-choice question.

    Attributes:
        label: What the model should answer (``"A"``, ``"B"``, ...).
        text: The option's text.
    """

    label: str
    text: str


@dataclass(frozen=True)
class AnswerCheck:
    """What a verifier found in one final thought, and whether it matches the gold answer.

    Attributes:
        correct: The answer matches the gold answer.
        answer: The answer found, normalised (a label, ``"yes"``/``"no"``, a LaTeX string);
            ``None`` when none was found.
        reason: Why the answer is not correct (``None`` when it is).
    """

    correct: bool
    answer: str | None
    reason: str | None = None


NO_ANSWER = "no answer found"
WRONG = "wrong answer"


class AnswerVerifier(ABC):
    """Reads the answer of a final thought and compares it with the gold answer."""

    answer_type: str = "answer"
    """The registry name."""

    @abstractmethod
    def check(self, final: str, gold: str, choices: Sequence[Choice] = ()) -> AnswerCheck:
        """Judge the final thought ``final``; never raises for bad model output.

        Args:
            final: The last thought of the chain.
            gold: The gold answer in this type's normal form (see :meth:`normalize_gold`).
            choices: The options, for multiple-choice questions.

        Returns:
            What the check found.
        """

    def normalize_gold(self, gold: Any, choices: Sequence[Choice] = ()) -> str | None:
        """The gold answer of a data row in this type's normal form; ``None`` if unusable.

        Args:
            gold: The row's gold value (text, a bool, a number).
            choices: The options, for multiple-choice questions.

        Returns:
            The normalised gold answer.
        """
        text = str(gold).strip()
        return text or None

    def close(self) -> None:
        """Release resources (worker processes); a later check may start them again."""
        return None


def _answer_check(answer: str | None, gold: str) -> AnswerCheck:
    if answer is None:
        return AnswerCheck(correct=False, answer=None, reason=NO_ANSWER)
    correct = answer == gold
    return AnswerCheck(correct=correct, answer=answer, reason=None if correct else WRONG)


_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_EDGE_PUNCTUATION = " \t\n.,;:!?'\"`*"


def clean_answer(text: str) -> str:
    r"""An answer without LaTeX text wrappers, ``$`` signs and edge punctuation.

    >>> clean_answer(r"$\text{(B)}$.")
    '(B)'
    """
    previous = None
    while previous != text:
        previous, text = text, _LATEX_WRAPPER.sub(r"\1", text)
    return text.replace("$", "").strip(_EDGE_PUNCTUATION)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


class MultipleChoiceVerifier(AnswerVerifier):
    r"""Multiple choice: the gold answer is an option label.

    The answer is read from the last ``\boxed{}`` of the final thought; without one, from the
    last "answer is (B)" / "Answer: B", else from the whole thought. A text reads as a label
    when it is the label alone (``B``, ``(B)``, ``B)``, ``b``), the label with the option
    (``B) text``, ``B. text``, ``B: text``) or the text of one option (compared without case
    and punctuation). Inside a box, a text holding exactly one option's text also names it
    (a longer option containing a shorter one wins).

    >>> choices = [Choice("A", "bank"), Choice("B", "river bank")]
    >>> v = MultipleChoiceVerifier()
    >>> [v.check(t, "B", choices).correct for t in [r"\boxed{B}", "(B)", r"\boxed{river bank}"]]
    [True, True, True]
    >>> v.check(r"so \boxed{A) bank}", "B", choices)
    AnswerCheck(correct=False, answer='A', reason='wrong answer')
    """

    answer_type = "multiple_choice"

    def check(self, final: str, gold: str, choices: Sequence[Choice] = ()) -> AnswerCheck:
        """Judge the option named by ``final`` against the gold label ``gold``."""
        return _answer_check(extract_choice(final, choices), gold)

    def normalize_gold(self, gold: Any, choices: Sequence[Choice] = ()) -> str | None:
        """The gold label: a label of ``choices`` (any case), or the label of an option text."""
        text = clean_answer(str(gold))
        return _choice_in(text, choices) if text else None


def extract_choice(final: str, choices: Sequence[Choice]) -> str | None:
    """The option label a final thought names, or ``None``; see :class:`MultipleChoiceVerifier`.

    Args:
        final: The final thought.
        choices: The options.

    Returns:
        A label of ``choices``, or ``None``.
    """
    boxed = last_boxed(final)
    if boxed is not None:
        return _choice_in(clean_answer(boxed), choices)
    labels = "|".join(re.escape(c.label) for c in sorted(choices, key=lambda c: -len(c.label)))
    if labels:
        cue = re.compile(
            rf"\b(?i:answer|option|choice)\s*(?:is|:)?\s*:?\s*[(\[]?({labels})[)\]]?(?!\w)"
        )
        found = cue.findall(final)
        if found:
            return str(found[-1])
    return _choice_in(clean_answer(final), choices, contains=False)


_LABEL_ALONE = re.compile(r"[(\[]?\s*(\w+)\s*[)\]]?\.?")
_LABEL_WITH_TEXT = re.compile(r"[(\[]?\s*(\w+)\s*(?:[)\]]|[.:\-])\s*\S.*", re.DOTALL)


def _choice_in(text: str, choices: Sequence[Choice], *, contains: bool = True) -> str | None:
    """The label ``text`` names: a label form, an option's text, or the one option it holds."""
    by_label = {c.label.casefold(): c.label for c in choices}
    for form in (_LABEL_ALONE, _LABEL_WITH_TEXT):
        match = form.fullmatch(text)
        if match and match.group(1).casefold() in by_label:
            return by_label[match.group(1).casefold()]
    wanted = _norm(text)
    exact = [c.label for c in choices if _norm(c.text) == wanted]
    if exact or not contains:
        return exact[0] if len(exact) == 1 else None
    inside = [c for c in choices if _norm(c.text) and f" {_norm(c.text)} " in f" {wanted} "]
    longest = [
        c for c in inside if not any(_norm(c.text) in _norm(o.text) for o in inside if o != c)
    ]
    return longest[0].label if len(longest) == 1 else None


YES_WORDS = frozenset({"yes", "true", "y", "correct"})
NO_WORDS = frozenset({"no", "false", "n", "incorrect"})


class YesNoVerifier(AnswerVerifier):
    r"""Yes/no questions (StrategyQA): answers and gold answers are ``"yes"`` or ``"no"``.

    The answer is the last ``\boxed{}`` of the final thought (``yes``, ``\text{No}``,
    ``True``, ``Yes, because ...``); without one, the last "answer is yes" or the thought's
    first word.

    >>> v = YesNoVerifier()
    >>> [v.check(t, "no").correct for t in [r"\boxed{No}", r"\boxed{\text{false}}", "No."]]
    [True, True, True]
    >>> v.normalize_gold(True)
    'yes'
    """

    answer_type = "yes_no"

    def check(self, final: str, gold: str, choices: Sequence[Choice] = ()) -> AnswerCheck:
        """Judge the yes/no answer of ``final`` against ``gold``."""
        return _answer_check(extract_yes_no(final), gold)

    def normalize_gold(self, gold: Any, choices: Sequence[Choice] = ()) -> str | None:
        """``"yes"``/``"no"`` from a bool, ``0``/``1`` or a yes/no/true/false text."""
        if isinstance(gold, bool | int) and gold in (0, 1):
            return "yes" if gold else "no"
        return _yes_no_in(clean_answer(str(gold)))


def extract_yes_no(final: str) -> str | None:
    """``"yes"``, ``"no"`` or ``None`` for a final thought; see :class:`YesNoVerifier`.

    Args:
        final: The final thought.

    Returns:
        The answer found.
    """
    boxed = last_boxed(final)
    if boxed is not None:
        return _yes_no_in(clean_answer(boxed))
    found = re.findall(r"\banswer\s*(?:is|:)\s*:?\s*(yes|no|true|false)\b", final, re.IGNORECASE)
    if found:
        return _yes_no_in(found[-1])
    words = re.findall(r"[a-z]+", final.casefold())
    return _yes_no_in(words[0]) if words and words[0] in YES_WORDS | NO_WORDS else None


def _yes_no_in(text: str) -> str | None:
    words = re.findall(r"[a-z]+", text.casefold())
    if not words:
        return None
    kinds = {"yes" if w in YES_WORDS else "no" for w in words if w in YES_WORDS | NO_WORDS}
    if words[0] in YES_WORDS | NO_WORDS:
        return "yes" if words[0] in YES_WORDS else "no"
    return kinds.pop() if len(kinds) == 1 else None


class MathAnswerVerifier(AnswerVerifier):
    r"""Math answers: the last ``\boxed{}`` is compared with the gold answer by math-verify.

    Checks run in worker processes under a time limit, with MathTask's verifier; workers
    start on the first check.

    Args:
        timeout: Seconds one check may take; past it the answer counts as wrong.
        num_workers: Verifier processes, so that many threads can check at once.
    """

    answer_type = "math"

    def __init__(self, timeout: float = 5.0, num_workers: int = 1) -> None:
        from thoughtmdp.envs.math import task as mp

        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
        self.timeout = timeout
        self._pool = mp.verifier_pool(timeout, num_workers)

    def check(self, final: str, gold: str, choices: Sequence[Choice] = ()) -> AnswerCheck:
        r"""Judge the last ``\boxed{}`` of ``final`` against the LaTeX answer ``gold``.

        Raises:
            VerifierUnavailable: If no verifier process can start, or the verifier keeps
                crashing (a setup problem, never a wrong answer).
        """
        answer = last_boxed(final)
        if answer is None:
            return AnswerCheck(correct=False, answer=None, reason="no boxed answer")
        from thoughtmdp.envs.math.task import verify_in

        correct, reason = verify_in(self._pool, answer, gold, timeout=self.timeout)
        return AnswerCheck(correct=correct, answer=answer, reason=reason)

    def normalize_gold(self, gold: Any, choices: Sequence[Choice] = ()) -> str | None:
        r"""The bare answer: a solution's last ``\boxed{}``, or the text without ``$...$``."""
        from thoughtmdp.envs.math.task import gold_answer

        return gold_answer(str(gold)) or None

    def close(self) -> None:
        """Stop the verifier processes."""
        self._pool.close()


ANSWER_TYPES: Registry[Any] = Registry("answer type", "thoughtmdp.answer_types")
"""Verifier factories by answer type (built-ins, :func:`register_answer_type`, entry points)."""
for _verifier in (MultipleChoiceVerifier, YesNoVerifier, MathAnswerVerifier):
    ANSWER_TYPES.register(_verifier.answer_type, _verifier)


def register_answer_type(name: str, target: Any = None) -> Any:
    """Register an :class:`AnswerVerifier` factory under ``name`` (call or class decorator).

    Args:
        name: The answer type, as written in suites and ``QATask(answer_type=...)``.
        target: The factory, or a lazy ``"module:attr"``; omit it to decorate a class.

    Returns:
        ``target``, or a decorator when it is omitted.
    """
    return ANSWER_TYPES.register(name, target)


def make_verifier(answer_type: str, **options: Any) -> AnswerVerifier:
    """Build the verifier of ``answer_type``.

    Args:
        answer_type: A registered answer type.
        **options: Passed to the factory (``timeout``/``num_workers`` for ``math``).

    Returns:
        The verifier.

    Raises:
        UnknownNameError: If the type is not registered (the message lists the known ones).
        ThoughtMDPError: If the factory does not build an :class:`AnswerVerifier`.

    >>> make_verifier("yes_no").check("yes", "yes").correct
    True
    """
    verifier = ANSWER_TYPES.get(answer_type)(**options)
    if not isinstance(verifier, AnswerVerifier):
        raise ThoughtMDPError(
            f"answer type {answer_type!r} built a {type(verifier).__name__}, not an AnswerVerifier"
        )
    return verifier
