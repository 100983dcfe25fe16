"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if not Path("/dev/nvidia0").exists():
    # DeepSpeed probes for an accelerator on first use and prints a warning to stdout, inside
    # whichever doctest happens to trigger it; naming the CPU up front keeps it quiet.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")


class CodePointTokenizer:
    """A real, reversible tokenizer: one id per Unicode code point, shifted by an offset.

    Its ids for a thought differ from any sampled ids the tests invent, so a test can tell
    whether the env kept sampled ids or re-tokenised the text.
    """

    offset = 1000

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) + self.offset for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i - self.offset) for i in ids)


@pytest.fixture(scope="session")
def tokenizer() -> CodePointTokenizer:
    return CodePointTokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2 model and its tokenizer, built once per test session."""
    from thoughtmdp.agents.warmstart.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))
