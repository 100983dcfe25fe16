"""Answer verifiers: multiple choice, yes/no and math, on tables of right and wrong formats."""

from __future__ import annotations

import re

import pytest

from thoughtmdp.envs.math.answer_types import (
    ANSWER_TYPES,
    AnswerCheck,
    AnswerVerifier,
    Choice,
    MathAnswerVerifier,
    MultipleChoiceVerifier,
    YesNoVerifier,
    clean_answer,
    make_verifier,
    register_answer_type,
)
from thoughtmdp.errors import ThoughtMDPError, UnknownNameError

CHOICES = [
    Choice("A", "cupboard"),
    Choice("B", "refrigerator"),
    Choice("C", "oven"),
    Choice("D", "river bank"),
    Choice("E", "bank"),
]


@pytest.mark.parametrize(
    ("final", "answer"),
    [
        (r"So the milk goes in the \boxed{B}", "B"),
        (r"\boxed{(B)}", "B"),
        (r"\boxed{B)}", "B"),
        (r"\boxed{b}", "B"),
        (r"\boxed{\text{B}}", "B"),
        (r"$\boxed{\textbf{(B)}}$", "B"),
        (r"\boxed{B) refrigerator}", "B"),
        (r"\boxed{B. refrigerator}", "B"),
        (r"\boxed{B: refrigerator}", "B"),
        (r"\boxed{Refrigerator.}", "B"),
        (r"\boxed{in the refrigerator}", "B"),
        (r"\boxed{river bank}", "D"),  # the longer option wins over "bank" inside it
        (r"\boxed{the bank}", "E"),
        ("(B)", "B"),
        ("B)", "B"),
        ("The answer is (B).", "B"),
        ("Answer: B", "B"),
        ("refrigerator", "B"),
        (r"first \boxed{A}, then \boxed{C}", "C"),  # the last box counts
    ],
)
def test_multiple_choice_reads_the_option(final, answer):
    check = MultipleChoiceVerifier().check(final, "B", CHOICES)
    reason = None if answer == "B" else "wrong answer"
    assert check == AnswerCheck(correct=answer == "B", answer=answer, reason=reason)


@pytest.mark.parametrize(
    "final",
    [
        r"\boxed{A or B}",  # two options
        r"\boxed{}",
        r"\boxed{F}",  # no such option
        r"\boxed{the freezer}",
        "I would keep it in the refrigerator, not the oven",  # unboxed prose names no option
        "so B",
        "",
    ],
)
def test_multiple_choice_without_a_single_option_is_no_answer(final):
    assert MultipleChoiceVerifier().check(final, "B", CHOICES) == AnswerCheck(
        correct=False, answer=None, reason="no answer found"
    )


@pytest.mark.parametrize(
    ("gold", "label"), [("B", "B"), ("b", "B"), ("(C)", "C"), ("oven", "C"), ("G", None)]
)
def test_multiple_choice_gold_is_a_label(gold, label):
    assert MultipleChoiceVerifier().normalize_gold(gold, CHOICES) == label


@pytest.mark.parametrize(
    ("final", "answer"),
    [
        (r"\boxed{yes}", "yes"),
        (r"\boxed{Yes}", "yes"),
        (r"\boxed{\text{YES}}", "yes"),
        (r"\boxed{True}", "yes"),
        (r"\boxed{Yes, penguins cannot fly that far}", "yes"),
        (r"\boxed{no}", "no"),
        (r"\boxed{\text{No.}}", "no"),
        (r"\boxed{false}", "no"),
        ("So the answer is no.", "no"),
        ("Answer: yes", "yes"),
        ("No. Penguins cannot fly.", "no"),
    ],
)
def test_yes_no_reads_the_answer(final, answer):
    check = YesNoVerifier().check(final, "no")
    assert (check.answer, check.correct) == (answer, answer == "no")


@pytest.mark.parametrize(
    "final", [r"\boxed{maybe}", r"\boxed{}", r"\boxed{42}", "It depends on the penguin."]
)
def test_yes_no_without_an_answer(final):
    assert YesNoVerifier().check(final, "no") == AnswerCheck(
        correct=False, answer=None, reason="no answer found"
    )


@pytest.mark.parametrize(
    ("gold", "normal"),
    [
        (True, "yes"),
        (False, "no"),
        (1, "yes"),
        (0, "no"),
        ("TRUE", "yes"),
        ("no", "no"),
        ("x", None),
    ],
)
def test_yes_no_gold(gold, normal):
    assert YesNoVerifier().normalize_gold(gold) == normal


def test_math_verifier_grades_equivalent_latex_in_a_worker():
    verifier = MathAnswerVerifier(timeout=5.0)
    try:
        cases = [
            (r"so \boxed{\frac{1}{2}}", r"\frac12", True),
            (r"\boxed{0.5}", r"\frac{1}{2}", True),
            (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", True),
            (r"\boxed{3}", "4", False),
        ]
        assert [verifier.check(f, g).correct for f, g, _ in cases] == [c for *_, c in cases]
        assert verifier.check(r"\boxed{3}", "4") == AnswerCheck(
            correct=False, answer="3", reason="wrong answer"
        )
        assert verifier.check("three", "3") == AnswerCheck(
            correct=False, answer=None, reason="no boxed answer"
        )
    finally:
        verifier.close()
    assert verifier.normalize_gold(r"Hence $\boxed{\frac{5}{6}}$.") == r"\frac{5}{6}"
    assert verifier.normalize_gold("$x^2$") == "x^2"
    assert verifier.normalize_gold("  ") is None


def test_clean_answer_strips_wrappers():
    assert clean_answer(r" \textbf{\text{(B)}}. ") == "(B)"


def test_unknown_answer_type_lists_the_known_ones():
    message = (
        "unknown answer type 'multiple'. Did you mean 'multiple_choice'? "
        "Known answer types: math, multiple_choice, yes_no"
    )
    with pytest.raises(UnknownNameError, match=f"^{re.escape(message)}$"):
        make_verifier("multiple")


def test_users_register_their_own_answer_type(monkeypatch):
    monkeypatch.setattr(ANSWER_TYPES, "_entries", dict(ANSWER_TYPES._entries))

    @register_answer_type("exact_test")
    class Exact(AnswerVerifier):
        answer_type = "exact_test"

        def check(self, final, gold, choices=()):
            return AnswerCheck(correct=final.strip() == gold, answer=final.strip())

    assert make_verifier("exact_test").check(" 42 ", "42").correct
    register_answer_type("not_a_verifier_test", dict)
    with pytest.raises(ThoughtMDPError, match="built a dict, not an AnswerVerifier"):
        make_verifier("not_a_verifier_test")
