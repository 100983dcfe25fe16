"""Grading semantics against hand-checked cases: lcb_runner's comparisons, programs, pass@k."""

from __future__ import annotations

import ast
import json
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thoughtmdp.envs.livecodebench.grading import (
    ProgramResult,
    TestResult,
    Verdict,
    mean_pass_at_k,
    return_value_matches,
    stdout_matches,
)
from thoughtmdp.envs.livecodebench.programs import (
    ENTRY_POINT,
    HEADER_MODULES,
    extract_code,
    import_header,
    prepare_call_program,
    prepare_stdin_program,
)
from thoughtmdp.envs.sandbox.values import Opaque, decode_value, encode_value
from thoughtmdp.runs.stats import pass_at_k

# -- stdin comparison ---------------------------------------------------------------------

STDOUT_CASES = [
    # (printed, expected, passes) -- each checked by hand against lcb_runner's rules
    ("3\n", "3", True),  # surrounding whitespace is stripped
    ("1 2\n3\n", "1  2\n3", True),  # text differs, the numbers agree
    ("0.5", "0.50", True),  # numbers compare as decimals
    ("1e2", "100", True),  # Decimal('1E+2') == Decimal('100')
    ("-0", "0", True),
    ("1\n2\n\n\n", "1\n2", True),  # trailing blank lines are stripped away
    ("  a b  \n c", "a b\nc", True),  # each line is stripped
    ("", "", True),
    ("nan", "nan", True),  # equal as text
    ("NaN", "nan", False),  # as decimals NaN never equals NaN
    ("1.0000001", "1.0", False),  # no tolerance: exact decimals
    ("1.3333333333333333", "1.3333333333", False),
    ("Yes", "yes", False),  # case matters
    ("abc", "abd", False),
    ("1\n\n2", "1\n2", False),  # an inner blank line is a line
    ("1 2", "1 2 3", False),
    ("1 x", "1 y", False),  # not all numbers, and the text differs
]


@pytest.mark.parametrize(("printed", "expected", "passes"), STDOUT_CASES)
def test_stdout_comparison(printed: str, expected: str, passes: bool) -> None:
    assert stdout_matches(printed, expected)[0] is passes


def test_stdout_comparison_explains_a_failure() -> None:
    assert stdout_matches("1\n2", "1") == (False, "wrong answer: 2 output lines, expected 1")
    assert stdout_matches("1\n5", "1\n4") == (False, "wrong answer on line 2: 5 != 4")


# -- call-based comparison ----------------------------------------------------------------

VALUE_CASES = [
    # (returned, expected JSON, passes)
    ([0, 1], "[0, 1]", True),
    ((0, 1), "[0, 1]", True),  # a top-level tuple counts as a list
    ([(0, 1)], "[[0, 1]]", False),  # a nested one does not (Python: (0, 1) != [0, 1])
    (True, "1", True),  # Python equality: True == 1
    (1.0, "1", True),
    ({1, 2}, "[1, 2]", False),
    (None, "null", True),
    ("a", '"a"', True),
    ({"a": (1,)}, '{"a": [1]}', False),
    ({"a": [1]}, '{"a": [1]}', True),
    ({1: 2}, '{"1": 2}', False),  # int keys are not the JSON string keys
    (float("nan"), "NaN", False),
    (10**30, str(10**30), True),
]


@pytest.mark.parametrize(("returned", "expected", "passes"), VALUE_CASES)
def test_return_value_comparison_through_the_wire_format(
    returned: object, expected: str, passes: bool
) -> None:
    decoded = decode_value(json.dumps(encode_value(returned)))
    assert return_value_matches(decoded, json.loads(expected))[0] is passes


def test_overridden_equality_gains_nothing() -> None:
    class Liar(list):  # type: ignore[type-arg]
        def __eq__(self, other: object) -> bool:
            return True

    class Anything:
        def __eq__(self, other: object) -> bool:
            return True

    for value, expected in ((Liar([9]), [1]), (Anything(), 1)):
        decoded = decode_value(json.dumps(encode_value(value)))
        assert return_value_matches(decoded, expected)[0] is False
    assert Opaque("x") != Opaque("x")


def test_numpy_scalars_keep_their_value() -> None:
    np = pytest.importorskip("numpy")
    encoded = encode_value([np.int64(3), np.float64(0.5), np.bool_(True)])
    assert encoded == [3, 0.5, True]
    assert decode_value(json.dumps(encode_value(np.array([1])))) != [1]


# -- programs -----------------------------------------------------------------------------


def test_extraction_takes_the_last_two_fence_lines() -> None:
    text = "first\n```python\nprint(1)\n```\nthen\n```python\nprint(2)\nprint(3)\n```\nbye"
    assert extract_code(text) == "print(2)\nprint(3)"
    assert extract_code("```python\nprint(1)") is None
    assert extract_code("no fences") is None
    assert extract_code("```\n```") == ""


def test_import_header_matches_lcb_runner() -> None:
    lines = import_header().splitlines()
    assert lines[: len(HEADER_MODULES)] == [f"from {m} import *" for m in HEADER_MODULES]
    assert "import builtins" not in lines and "import typing" not in lines
    assert lines[-1] == "sys.setrecursionlimit(50000)"
    assert HEADER_MODULES.index("builtins") > HEADER_MODULES.index("math")  # pow is builtin


def test_stdin_programs_are_wrapped_like_lcb_runner() -> None:
    code = (
        "import sys\nN = int(input())\ndef main():\n    print(N)\n"
        "from math import gcd\nif __name__ == '__main__':\n    main()\n"
    )
    tree = ast.parse(prepare_stdin_program(code))
    own = tree.body[-3:]  # after the header: the two hoisted imports and the function
    assert [type(s) for s in own] == [ast.Import, ast.ImportFrom, ast.FunctionDef]
    function = own[-1]
    assert isinstance(function, ast.FunctionDef) and function.name == ENTRY_POINT
    assert ast.unparse(function.body[-1]) == "main()"  # the guard's body, unwrapped
    assert prepare_stdin_program("def broken(:\n") == "def broken(:\n"


def test_only_a_final_main_guard_is_unwrapped() -> None:
    code = "if __name__ == '__main__':\n    print(1)\nprint(2)"
    function = ast.parse(prepare_stdin_program(code)).body[-1]
    assert isinstance(function, ast.FunctionDef)
    assert isinstance(function.body[0], ast.If)


def test_call_programs_get_the_header() -> None:
    assert prepare_call_program("class Solution: pass").endswith("\n\nclass Solution: pass")


# -- results and pass@k -------------------------------------------------------------------


def test_program_result_counts() -> None:
    results = (TestResult(Verdict.PASSED), TestResult(Verdict.WRONG_ANSWER, "wrong"))
    result = ProgramResult(results, total=4)
    assert (result.passed, result.fraction, result.all_passed) == (1, 0.25, False)
    assert ProgramResult((TestResult(Verdict.PASSED),), 1).all_passed
    assert not ProgramResult((), 0).all_passed
    codes = [v.lcb_code for v in Verdict]
    assert codes == [True, -2, -3, -4, -4, -5]


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(5, 2, 2, 0.7), (10, 0, 5, 0.0), (3, 3, 1, 1.0), (10, 3, 1, 0.3), (4, 1, 4, 1.0)],
)
def test_pass_at_k_hand_checked(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@given(
    st.integers(1, 60).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))
    )
)
def test_pass_at_k_equals_the_binomial_formula(case: tuple[int, int, int]) -> None:
    n, c, k = case
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-9)


def test_pass_at_k_is_stable_for_large_n() -> None:
    exact = 1 - Fraction(math.comb(990, 100), math.comb(1000, 100))
    assert pass_at_k(1000, 10, 100) == pytest.approx(float(exact), rel=1e-9)


def test_pass_at_k_rejects_impossible_counts() -> None:
    message = "pass@k needs 0 <= c <= n and 1 <= k <= n, got n=3, c=4, k=1"
    with pytest.raises(ValueError, match=f"^{message}$"):
        pass_at_k(3, 4, 1)


def test_mean_pass_at_k_needs_k_samples_everywhere() -> None:
    assert mean_pass_at_k([(5, 2), (5, 0)], 2) == pytest.approx(0.35)
    assert mean_pass_at_k([(5, 2), (1, 0)], 2) is None
    assert mean_pass_at_k([], 1) is None
