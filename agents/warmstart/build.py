"""Building the embedded policy: supervised training of a tiny Qwen2 model from scratch.

:func:`ensure_warm_start` returns the cached model of a recipe, building it first when the
cache has none: a byte-level BPE tokenizer trained on the recipe's texts, a randomly
initialised Qwen2 model, and AdamW (linear warm-up, cosine decay) on the recipe's stream of
traces and localisation questions. The folder is written under a temporary name and renamed
when complete, under a lock, so concurrent runs build it once and never see half a model.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from thoughtmdp.agents.warmstart.data import Example, examples, recipe_task, tokenizer_corpus
from thoughtmdp.agents.warmstart.tiny_model import (
    build_tokenizer,
    init_model,
    save_model,
    tiny_config,
    wrap_tokenizer,
)
from thoughtmdp.settings.convert import to_dict
from thoughtmdp.settings.warmstart import RECIPE_FILE, WarmStartRecipe, model_folder

REPORT_FILE = "report.json"
IGNORE = -100  # label of tokens without loss (prompts and padding)
Row = tuple[list[int], list[int]]  # prompt ids, target ids
Progress = Callable[[int, float], None]
"""Called after each optimiser step with ``(step, loss)``."""


@dataclass(frozen=True)
class WarmStart:
    """A built (or cached) embedded policy.

    Attributes:
        folder: The model folder (weights, tokenizer, ``recipe.json``, ``report.json``).
        report: The build report (see :mod:`thoughtmdp.agents.warmstart.report`).
        built: Whether this call built it (``False``: it came from the cache).
    """

    folder: Path
    report: dict[str, Any]
    built: bool


def ensure_warm_start(
    recipe: WarmStartRecipe, progress: Progress | None = None, rebuild: bool = False
) -> WarmStart:
    """The model ``recipe`` describes, from the cache or built now.

    Args:
        recipe: The recipe.
        progress: Called after every optimiser step of a build.
        rebuild: Build even when the cache holds the model.

    Returns:
        The model folder and its report.
    """
    folder = model_folder(recipe)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / f"{folder.name}.lock"):
        if rebuild and folder.exists():
            shutil.rmtree(folder)
        if (folder / REPORT_FILE).is_file():
            return WarmStart(folder, json.loads((folder / REPORT_FILE).read_text()), False)
        tmp = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        report = build_warm_start(recipe, tmp, progress)
        os.rename(tmp, folder)
    return WarmStart(folder, report, True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_warm_start(
    recipe: WarmStartRecipe, folder: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Train the recipe's model into ``folder`` and measure it on held-out problems.

    Args:
        recipe: The recipe.
        folder: Where the model, its tokenizer, the recipe and the report are written.
        progress: Called after every optimiser step.

    Returns:
        The report, also written to ``folder/report.json``.
    """
    from thoughtmdp.agents.warmstart.report import warm_start_report

    started = time.perf_counter()
    task = recipe_task(recipe)
    tokenizer = wrap_tokenizer(build_tokenizer(recipe.vocab_size, tokenizer_corpus(recipe, task)))
    model = _initial_model(recipe, tokenizer)
    final_loss = train_supervised(model, tokenizer, recipe, progress)
    _save(model, tokenizer, recipe, folder)
    trained = time.perf_counter() - started
    report = warm_start_report(folder, recipe)
    report.update(
        task=recipe.task,
        train_seconds=round(trained, 1),
        build_seconds=round(time.perf_counter() - started, 1),
        final_loss=round(final_loss, 4),
        parameters=sum(p.numel() for p in model.parameters()),
    )
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _initial_model(recipe: WarmStartRecipe, tokenizer: PreTrainedTokenizerFast) -> Any:
    sizes = (recipe.hidden_size, recipe.num_layers, recipe.num_heads, recipe.intermediate_size)
    return init_model(tiny_config(len(tokenizer), *sizes), tokenizer, recipe.seed)


def train_supervised(
    model: Any,
    tokenizer: PreTrainedTokenizerFast,
    recipe: WarmStartRecipe,
    progress: Progress | None = None,
) -> float:
    """Run the recipe's optimiser steps on its example stream; returns the last loss.

    Each step's examples are sorted by length and split in two micro-batches, so short
    traces are not padded to the length of localisation questions; the loss is the mean
    over all target tokens of the step either way.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    stream = examples(recipe, recipe_task(recipe), tokenizer.eos_token)
    model.train()
    loss = math.nan
    for step in range(recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step)
        rows = sorted(
            (encode_example(tokenizer, next(stream)) for _ in range(recipe.batch_size)),
            key=lambda row: len(row[0]) + len(row[1]),
        )
        targets = sum(len(target) for _, target in rows)
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        half = (len(rows) + 1) // 2
        for part in (rows[:half], rows[half:]):
            if not part:
                continue
            input_ids, labels = pad_rows(part, tokenizer.pad_token_id)
            logits = model(input_ids=input_ids).logits[:, :-1]  # (B, T-1, V)
            summed = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE, reduction="sum"
            )
            (summed / targets).backward()
            total += float(summed.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss = total / targets
        if progress is not None:
            progress(step + 1, loss)
    return loss


def learning_rate(recipe: WarmStartRecipe, step: int) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``final_lr_ratio * lr``.

    >>> recipe = WarmStartRecipe(steps=101, warmup_steps=10, lr=1.0, final_lr_ratio=0.1)
    >>> [round(learning_rate(recipe, s), 3) for s in (0, 9, 10, 55, 100)]
    [0.1, 1.0, 1.0, 0.55, 0.1]
    """
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    span = max(recipe.steps - 1 - recipe.warmup_steps, 1)
    progress = (step - recipe.warmup_steps) / span
    floor = recipe.final_lr_ratio
    return recipe.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def encode_example(tokenizer: PreTrainedTokenizerFast, example: Example) -> Row:
    """Token ids of an example's prompt and target, encoded separately as a rollout sees them.

    The env tokenises the prompt; the target's tokens are what the policy samples after it.
    """
    prompt, target = example
    return (
        tokenizer.encode(prompt, add_special_tokens=False),
        tokenizer.encode(target, add_special_tokens=False),
    )


def pad_rows(rows: list[Row], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids and labels (``-100`` on prompts and padding).

    >>> ids, labels = pad_rows([([5], [6, 7]), ([5, 5], [8])], pad_id=0)
    >>> ids.tolist(), labels.tolist()
    ([[5, 6, 7], [5, 5, 8]], [[-100, 6, 7], [-100, -100, 8]])
    """
    width = max(len(p) + len(t) for p, t in rows)
    input_ids = torch.full((len(rows), width), pad_id)  # (B, T)
    labels = torch.full((len(rows), width), IGNORE)  # (B, T)
    for b, (prompt, target) in enumerate(rows):
        end = len(prompt) + len(target)
        input_ids[b, :end] = torch.tensor(prompt + target)
        labels[b, len(prompt) : end] = torch.tensor(target)
    return input_ids, labels


def _save(
    model: Any, tokenizer: PreTrainedTokenizerFast, recipe: WarmStartRecipe, folder: Path
) -> None:
    save_model(model, tokenizer, folder)
    (folder / RECIPE_FILE).write_text(json.dumps(to_dict(recipe), indent=2) + "\n")
