"""Extracting final answers from thought text."""

from __future__ import annotations

BOXED = "\\boxed{"


def last_boxed(text: str) -> str | None:
    r"""Return the content of the last balanced ``\boxed{...}`` in ``text``.

    Args:
        text: A thought or a whole chain.

    Returns:
        The content between the braces, or ``None`` when there is no complete box.

    >>> last_boxed(r"so \boxed{1} no, \boxed{\frac{1}{2}}")
    '\\frac{1}{2}'
    >>> last_boxed(r"\boxed{unclosed") is None
    True
    """
    start = text.rfind(BOXED)
    while start != -1:
        content = _balanced(text, start + len(BOXED))
        if content is not None:
            return content
        start = text.rfind(BOXED, 0, start)
    return None


def has_boxed(text: str) -> bool:
    r"""Whether ``text`` holds a complete ``\boxed{...}``.

    >>> has_boxed(r"x = \boxed{3}"), has_boxed("x = 3")
    (True, False)
    """
    return last_boxed(text) is not None


def _balanced(text: str, begin: int) -> str | None:
    depth = 1
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i]
    return None
