"""The policy backend an evaluation samples from: vLLM or transformers, imported when built."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BACKENDS = ("auto", "vllm", "transformers")
"""Backend choices; ``auto`` is vLLM when it is installed, else transformers."""


def make_backend(
    model: str,
    choice: str = "auto",
    *,
    adapters: Sequence[str | Path] = (),
    device: str = "cpu",
    max_batch_size: int = 16,
    engine_options: Mapping[str, Any] | None = None,
) -> tuple[Any, str]:
    """The policy backend of an evaluation.

    Args:
        model: The base model.
        choice: ``"auto"``, ``"vllm"`` or ``"transformers"``.
        adapters: Adapter folders to be loaded (their largest rank sizes vLLM's LoRA slots).
        device: Torch device of the transformers backend.
        max_batch_size: Most requests the transformers backend decodes together.
        engine_options: vLLM engine options.

    Returns:
        The backend and the name of its kind.
    """
    if choice == "auto":
        found = importlib.util.find_spec("vllm") is not None
        has_backend = importlib.util.find_spec("thoughtmdp.agents.backends.vllm") is not None
        choice = "vllm" if found and has_backend else "transformers"
    if choice == "vllm":
        from thoughtmdp.agents.backends.vllm import VLLMBackend

        ranks = [json.loads((Path(a) / "adapter_config.json").read_text())["r"] for a in adapters]
        backend = VLLMBackend(model, lora_rank=max(ranks, default=8), engine_options=engine_options)
        return backend, "vllm"
    from thoughtmdp.agents.backends.transformers import TransformersBackend

    return TransformersBackend(model, device=device, max_batch_size=max_batch_size), "transformers"
