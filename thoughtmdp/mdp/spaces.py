"""Gymnasium spaces for free text."""

from __future__ import annotations

import string
from typing import Any

from gymnasium.spaces import Text

SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n" + "αβγ√∑≤≥→é中文"
"""Characters used when *sampling*; :meth:`UnicodeText.contains` accepts any character."""


class UnicodeText(Text):
    """A :class:`gymnasium.spaces.Text` that contains any Unicode string within its length bounds.

    Gymnasium's ``Text`` only contains strings over its sampling charset; model output is
    arbitrary Unicode. Samples are drawn from :data:`SAMPLE_CHARSET` with at most
    ``sample_max_length`` characters, so random actions stay small.

    Args:
        max_length: Longest string contained.
        min_length: Shortest string contained.
        sample_max_length: Longest string :meth:`sample` draws.
        seed: Seed of the sampler.
    """

    def __init__(
        self,
        max_length: int,
        *,
        min_length: int = 0,
        sample_max_length: int = 64,
        seed: int | None = None,
    ) -> None:
        super().__init__(max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)
        self.sample_max_length = max(min_length, min(sample_max_length, max_length))

    def contains(self, x: Any) -> bool:
        """Whether ``x`` is a str whose length lies within the bounds."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of at most ``sample_max_length`` characters."""
        if mask is None and probability is None:
            length = int(self.np_random.integers(self.min_length, self.sample_max_length + 1))
            mask = (length, None)
        return super().sample(mask=mask, probability=probability)

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UnicodeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )
