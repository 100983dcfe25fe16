"""Settings of an evaluation: how each problem is rolled out, and the command-line options for them.

One :class:`EvalSettings` drives the held-out pass rate of ``thoughtmdp train``, the suites of
``thoughtmdp eval`` and the chains of ``thoughtmdp audit-localization``; the two commands'
options are generated from its fields by :func:`add_eval_arguments` and read back by
:func:`eval_settings_from_args`.

Three seeds meet in an evaluation, and only one of them lives here:

- the *training seed* of a checkpoint: ``thoughtmdp eval`` takes one adapter per training seed
  in a report row (``--adapter NAME=S0,S42,S420``) and reports the SD over them;
- the *sample seed* of the items (the suite's ``sample_seed``, ``--sample-seed``): one fixed
  sample per task, shared by the base model and every adapter;
- the *generation seed* (:attr:`EvalSettings.sampling_seed`): the base of each rollout's
  request seed, which matters only when sampling (temperature > 0).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any

from thoughtmdp.backend import SamplingParams
from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.arguments import attribute_docs

AT_LEAST_ONE = ("max_tokens", "max_thoughts", "max_total_tokens", "samples", "concurrency")


@dataclass(frozen=True)
class EvalSettings:
    """How each problem is rolled out (greedy by default, the paper's evaluation).

    Attributes:
        temperature: Sampling temperature of each thought (0 = greedy).
        top_p: Nucleus mass kept when sampling.
        max_tokens: Most tokens in one thought.
        max_thoughts: Most thoughts in a chain.
        max_total_tokens: Most thought tokens in a chain (None: no budget).
        samples: Rollouts per problem (the n of pass@k).
        sampling_seed: Generation seed: the base of the per-request seeds (they matter when
            temperature > 0). It picks neither the items (the suite's ``sample_seed``) nor a
            checkpoint (the training seed of an adapter).
        concurrency: Rollouts in flight at once.
        chat_template: How prompts reach the model, as in training (the actor's setting of
            the same name): ``auto`` (the model's chat template if its tokenizer has one,
            else raw text), ``none`` (raw text) or the path of a Jinja template file.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    max_thoughts: int = 20
    max_total_tokens: int | None = 4096
    samples: int = 1
    sampling_seed: int = 0
    concurrency: int = 64
    chat_template: str = "auto"

    def __post_init__(self) -> None:
        for name in AT_LEAST_ONE:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}: expected 1 or more, got {value}")
        if self.temperature < 0:
            raise ConfigError(f"temperature: expected 0 or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: expected a value in (0, 1], got {self.top_p}")

    def sampling(self, seed: int | None = None) -> SamplingParams:
        """The backend's sampling parameters of one request.

        >>> EvalSettings(max_tokens=32).sampling(seed=7)
        SamplingParams(temperature=0.0, top_p=1.0, max_tokens=32, seed=7, stop=('</thought>',), adapter=None)
        """  # noqa: E501
        return SamplingParams(self.temperature, self.top_p, self.max_tokens, seed=seed)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide a rollout: stored records are reused only when they match."""
        kept = ("temperature", "top_p", "max_thoughts", "max_tokens", "max_total_tokens")
        return {k: getattr(self, k) for k in (*kept, "sampling_seed", "chat_template")}


OPTIONS = (
    "samples",
    "temperature",
    "top_p",
    "max_thoughts",
    "max_tokens",
    "max_total_tokens",
    "concurrency",
    "chat_template",
)
"""The fields that are command-line options (``--top-p`` sets ``top_p``)."""


def add_eval_arguments(parser: argparse.ArgumentParser, defaults: EvalSettings) -> None:
    """Add one option per field of :data:`OPTIONS`, its help taken from the field's docs.

    Args:
        parser: The command's parser.
        defaults: The command's defaults (the audit samples at the training temperature).
    """
    docs = attribute_docs(EvalSettings.__doc__ or "")
    for name in OPTIONS:
        default, text = getattr(defaults, name), docs[name].rstrip(".")
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(getattr(EvalSettings(), name)),  # every option's default is set
            default=default,
            help=f"{text[0].lower()}{text[1:]}; default {default}",
        )


def eval_settings_from_args(
    args: argparse.Namespace, defaults: EvalSettings, **fixed: Any
) -> EvalSettings:
    """The settings an ``eval`` or ``audit-localization`` command line asks for.

    Args:
        args: Parsed arguments holding every option of :func:`add_eval_arguments`.
        defaults: The settings of the fields that are not options.
        **fixed: Fields the command sets from options of its own (the audit's ``--seed``).

    Returns:
        The settings.

    Raises:
        ConfigError: On a value out of range, naming its option.

    >>> parser = argparse.ArgumentParser()
    >>> add_eval_arguments(parser, EvalSettings())
    >>> eval_settings_from_args(parser.parse_args(["--top-p", "0.9"]), EvalSettings()).top_p
    0.9
    """
    values = {name: getattr(args, name) for name in OPTIONS}
    try:
        return replace(defaults, **values, **fixed)
    except ConfigError as exc:
        name, _, problem = str(exc).partition(": ")
        raise ConfigError(f"--{name.replace('_', '-')}: {problem}") from None
