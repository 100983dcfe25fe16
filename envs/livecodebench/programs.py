"""Programs as ``lcb_runner`` runs them: extraction, import header, returned values.

- :func:`extract_code`: the program is the text between the last two fence lines.
- :func:`prepare_stdin_program` / :func:`prepare_call_program`: the import header every
  program gets and, for stdin programs, the wrapping into one function.

Returned values travel from the sandbox child as :mod:`thoughtmdp.envs.sandbox.values` encodes them.
"""

from __future__ import annotations

import ast

FENCE = "```"
ENTRY_POINT = "wrapped_function"
"""Name of the function stdin programs are wrapped into, as ``lcb_runner`` does."""

HEADER_MODULES = (
    "string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
    "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing",
)  # fmt: skip
"""Modules ``lcb_runner`` star-imports before every program, in its order (later names win)."""

RECURSION_LIMIT = 50_000


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
    they do under ``lcb_runner``). Code that does not parse, or nests too deeply to
    rewrite, is returned unchanged (as ``lcb_runner`` does), so loading it reports why.

    Args:
        code: The program as the model wrote it.

    Returns:
        Source defining :data:`ENTRY_POINT`.
    """
    try:
        return _wrap(ast.parse(code).body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code


def _wrap(body: list[ast.stmt]) -> str:
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
