"""Programs as ``lcb_runner`` runs them: extraction, import header, returned values.

- :func:`extract_code`: the program is the text between the last two fence lines.
- :func:`prepare_stdin_program` / :func:`prepare_call_program`: the import header every
  program gets and, for stdin programs, the wrapping into one function.
- :func:`encode_value` / :func:`decode_value`: how a returned value travels from the
  sandbox child to the parent without losing what ``==`` would see.

Only the standard library is used: the sandbox child imports this file by itself.
"""

from __future__ import annotations

import ast
import json
import numbers
from typing import Any

FENCE = "```"
ENTRY_POINT = "wrapped_function"
"""Name of the function stdin programs are wrapped into, as ``lcb_runner`` does."""

HEADER_MODULES = (
    "string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
    "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing",
)  # fmt: skip
"""Modules ``lcb_runner`` star-imports before every program, in its order (later names win)."""

RECURSION_LIMIT = 50_000
TAG_TUPLE = "\x00tuple"
TAG_OPAQUE = "\x00opaque"


def extract_code(text: str) -> str | None:
    r"""The program in a model's answer: the lines between the last two fence lines.

    Args:
        text: Model output; any line containing three backticks counts as a fence.

    Returns:
        The code, or ``None`` when fewer than two fence lines exist.

    >>> extract_code("Plan.\n```python\nprint(1)\n```\nDone.")
    'print(1)'
    >>> extract_code("no code") is None
    True
    """
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if FENCE in line]
    if len(fences) < 2:
        return None
    return "\n".join(lines[fences[-2] + 1 : fences[-1]])


def import_header() -> str:
    """The import lines ``lcb_runner`` puts before every program, and its recursion limit."""
    stars = [f"from {name} import *" for name in HEADER_MODULES]
    plain = [f"import {name}" for name in HEADER_MODULES if name not in ("builtins", "typing")]
    return "\n".join([*stars, *plain, f"sys.setrecursionlimit({RECURSION_LIMIT})"]) + "\n"


def prepare_stdin_program(code: str) -> str:
    """Rewrite a stdin program the way ``lcb_runner`` runs it.

    A final ``if __name__ == "__main__":`` block is replaced by its body; imports move to
    the top, after :func:`import_header`; every other statement goes into the body of a
    function named :data:`ENTRY_POINT`, which is called once per test. Module-level names
    therefore become local variables (``global`` statements that refer to them fail, as
    they do under ``lcb_runner``). Code that does not parse is returned unchanged, so
    that loading it reports the syntax error.

    Args:
        code: The program as the model wrote it.

    Returns:
        Source defining :data:`ENTRY_POINT`.
    """
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError):
        return code
    if body and _is_main_guard(body[-1]):
        guard = body.pop()
        assert isinstance(guard, ast.If)
        body.extend(guard.body)
    imports: list[ast.stmt] = [s for s in body if isinstance(s, ast.Import | ast.ImportFrom)]
    rest = [s for s in body if not isinstance(s, ast.Import | ast.ImportFrom)]
    function = ast.FunctionDef(
        name=ENTRY_POINT,
        args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=rest or [ast.Pass()],
        decorator_list=[],
        lineno=1,
    )
    module = ast.Module(body=[*imports, function], type_ignores=[])
    return import_header() + "\n" + ast.unparse(module) + "\n"


def prepare_call_program(code: str) -> str:
    """A call-based program with :func:`import_header` before it, as ``lcb_runner`` runs it."""
    return import_header() + "\n\n" + code


def _is_main_guard(statement: ast.stmt) -> bool:
    if not isinstance(statement, ast.If):
        return False
    test = statement.test
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


class Opaque:
    """A returned value with no JSON form (a set, an object): equal to nothing."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return self.text


def encode_value(value: Any) -> Any:
    r"""A returned value as plain JSON data that keeps what ``==`` would see.

    A top-level tuple becomes a list (``lcb_runner`` forgives tuples there); nested tuples
    and values without a JSON form are tagged, so they never compare equal to the JSON
    expected output after :func:`decode_value`. Subclasses of builtins and numeric scalars
    of other libraries keep their plain value, so an overridden ``__eq__`` gains nothing.

    Args:
        value: What the program returned.

    Returns:
        Data for :func:`json.dumps`.

    >>> encode_value((1, (2, 3), {4}))
    [1, {'\x00tuple': [2, 3]}, {'\x00opaque': '{4}'}]
    """
    return _plain(list(value) if isinstance(value, tuple) else value)


def _plain(value: Any) -> Any:
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return {TAG_TUPLE: [_plain(item) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {str.__str__(key): _plain(item) for key, item in value.items()}
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)  # numpy scalars such as numpy.bool_
    if callable(item) and type(value).__module__ == "numpy":
        plain = item()
        if type(plain) in (bool, int, float, str):
            return plain
    return {TAG_OPAQUE: _clip(repr(value), 200)}


def decode_value(text: str) -> Any:
    r"""Rebuild a return value sent by the sandbox child (tuples and opaque values tagged).

    Args:
        text: JSON written by the child's value encoder.

    Returns:
        The value, with nested tuples as tuples and non-JSON values as :class:`Opaque`.

    >>> decode_value('[1, {"\\u0000tuple": [2, 3]}]')
    [1, (2, 3)]
    """
    return json.loads(text, object_hook=_untag)


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if TAG_TUPLE in obj and isinstance(obj[TAG_TUPLE], list):
            return tuple(obj[TAG_TUPLE])
        if TAG_OPAQUE in obj:
            return Opaque(str(obj[TAG_OPAQUE]))
    return obj


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit // 2] + " ... " + text[-limit // 2 :]
