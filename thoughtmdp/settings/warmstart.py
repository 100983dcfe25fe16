"""The recipe of the embedded policy: a tiny Qwen2 model taught ArithChain from scratch.

The recipe's task is ``arith_chain`` (the default) or ``hard_step_chain``, the long chains
with one hard step on which resets are measured.

A recipe names everything that decides the model (task, traces, mistakes, architecture,
optimiser, seed); the model is built once and cached under the user's cache directory in a
folder named by the recipe's fingerprint, so changing any field builds a new model. No torch
is imported here: the CLI validates a recipe before anything heavy loads.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.convert import to_dict

RECIPE_FORMAT = 1  # bump when the builder changes what a recipe produces
RECIPE_TASKS = ("arith_chain", "hard_step_chain")
LATER_FIELDS = {"task": "arith_chain", "hard_error_rate": 0.0, "hard_operand_range": [3, 9]}
"""Fields added after format 1: they enter the fingerprint only when they differ from these,
so the models of earlier recipes stay cached."""
CACHE_ENV = "THOUGHTMDP_CACHE"
RECIPE_FILE = "recipe.json"  # beside a built policy: the recipe it was built from

TINY_PROMPT = "Q: {question}\n"
"""Rollout prompt of the embedded policy: a tiny model reads no instructions."""

TINY_LOCALIZER = "Q: {question}\n{steps}\nFirst wrong step of {num_steps}:"
"""Self-localisation prompt of the embedded policy (answered as `` \\boxed{N}``)."""


@dataclass(frozen=True)
class WarmStartRecipe:
    r"""How the embedded policy is built: supervised training on ArithChain traces.

    Traces are reference chains in which each step carries an injected mistake (off by 1 to
    3) with probability ``error_rate``; later steps build on the wrong value, as a model's
    would. A share ``localization_share`` of the examples instead show a failed chain and
    answer which step went wrong first, as `` \boxed{N}``, so that the policy can localise
    its own mistakes (imperfectly) for SRPO. In those chains the first wrong step is drawn
    uniformly, so the answer has to come from checking the steps, not from where mistakes
    usually are.

    For ``hard_step_chain`` the traces' hard step (the multiplication, at a uniformly drawn
    position) errs at ``hard_error_rate`` and the easy steps at ``error_rate``, so the
    policy's own failures gather at the hard step; the model serves every ``hard_step``.

    Attributes:
        task: ``arith_chain`` or ``hard_step_chain``.
        num_steps: Operations per problem.
        operators: Operators the problems use (``arith_chain`` only).
        operand_range: Inclusive range of operands (of the easy steps, for
            ``hard_step_chain``).
        hard_operand_range: Inclusive range of the multiplier (``hard_step_chain`` only).
        error_rate: Chance that a step of a training trace carries a mistake (an easy step,
            for ``hard_step_chain``).
        hard_error_rate: Chance that the hard step of a ``hard_step_chain`` trace carries one.
        localization_share: Share of training examples that are localisation questions.
        prompt_template: Rollout prompt (``{question}``).
        localizer_template: Localisation prompt (``{question}``, ``{steps}``, ``{num_steps}``).
        vocab_size: Target size of the byte-level BPE vocabulary.
        hidden_size: Width of the residual stream.
        num_layers: Decoder layers.
        num_heads: Attention heads (head size ``hidden_size / num_heads`` >= 32 for vLLM).
        intermediate_size: Width of the MLP.
        steps: Optimiser steps.
        batch_size: Examples per step.
        lr: Peak learning rate of AdamW.
        warmup_steps: Linear warm-up steps.
        final_lr_ratio: Learning rate at the end, as a share of ``lr`` (cosine decay).
        seed: Seed of the initialisation and of the data.
        eval_problems: Held-out problems in the build report.
    """

    task: str = "arith_chain"
    num_steps: int = 3
    operators: str = "+-"
    operand_range: tuple[int, int] = (1, 9)
    hard_operand_range: tuple[int, int] = (3, 9)
    error_rate: float = 0.3
    hard_error_rate: float = 0.0
    localization_share: float = 0.5
    prompt_template: str = TINY_PROMPT
    localizer_template: str = TINY_LOCALIZER
    vocab_size: int = 320
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 2
    intermediate_size: int = 256
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    final_lr_ratio: float = 0.1
    seed: int = 0
    eval_problems: int = 400

    def __post_init__(self) -> None:
        if self.task not in RECIPE_TASKS:
            raise ConfigError(f"warmstart.task: expected one of {RECIPE_TASKS}, got {self.task!r}")
        for name in ("error_rate", "hard_error_rate", "localization_share", "final_lr_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"warmstart.{name}: expected 0..1, got {getattr(self, name)}")
        for name in ("num_steps", "steps", "batch_size", "eval_problems", "num_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"warmstart.{name}: expected 1 or more, got {getattr(self, name)}"
                )
        if self.hidden_size % self.num_heads or self.hidden_size // self.num_heads < 32:
            raise ConfigError(
                f"warmstart.num_heads: hidden_size / num_heads must be a whole number >= 32 "
                f"(vLLM's CPU attention), got {self.hidden_size} / {self.num_heads}"
            )

    def task_options(self) -> dict[str, Any]:
        """The options of the task the model is trained for (``task``)."""
        options: dict[str, Any] = {
            "num_steps": self.num_steps,
            "operand_range": list(self.operand_range),
            "prompt_template": self.prompt_template,
            "localizer_template": self.localizer_template,
        }
        if self.task == "hard_step_chain":
            return {
                **options,
                "hard_step": None,
                "hard_operand_range": list(self.hard_operand_range),
            }
        return {**options, "operators": self.operators}

    def fingerprint(self) -> str:
        """A short hash of the recipe: the name of its cache folder."""
        fields = to_dict(self)
        for name, default in LATER_FIELDS.items():
            if fields[name] == default:
                del fields[name]
        text = json.dumps({"format": RECIPE_FORMAT, **fields}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_root() -> Path:
    """Where built models are kept: ``$THOUGHTMDP_CACHE``, else the XDG cache directory."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "thoughtmdp"


def model_folder(recipe: WarmStartRecipe) -> Path:
    """The cache folder of the model ``recipe`` builds (it may not exist yet)."""
    return cache_root() / "warmstart" / recipe.fingerprint()
