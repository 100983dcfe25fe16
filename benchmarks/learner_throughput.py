"""Learner throughput: tokens per second of the update, naive forward vs shared-prefix forward.

Batches are 1x4 episodes (a base group of 4 from the prompt, a reset group of 4 that share
the prompt and the seed chain's first ``h* - 1`` thoughts), every rollout with a non-zero
advantage. The model is a randomly initialised Qwen2 (no download), large enough that the
forward and backward passes dominate. Both runs train the same LoRA on the same batches;
they differ only in ``shared_prefix``. Tokens/s counts every token of every rollout (prompt,
prefix and sampled) over the time of ``Trainer.step`` (forward, backward, AdamW), so the
numerator is the same for both and the ratio is the ratio of update times. The two kinds of
step alternate, so a machine busy with other work slows both alike; the median is reported.

Usage: ``python benchmarks/learner_throughput.py --quick`` (a few minutes on 2 cores) or
without ``--quick`` for longer chains. Writes ``benchmarks/results/learner_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import peft
import torch
import transformers
from report_files import RESULTS, write_report

from thoughtmdp.learners import LearnerConfig, LoraSettings, build_trainer
from thoughtmdp.learners.synthetic import random_episode

GOAL = 1.3
"""Speed-up of the shared-prefix forward on 1x4 episodes that the learner should reach."""

SIZES = {
    "quick": {"prompt_tokens": 128, "thoughts": 6, "thought_tokens": 32, "reset_index": 4},
    "full": {"prompt_tokens": 256, "thoughts": 8, "thought_tokens": 64, "reset_index": 5},
}
MODEL = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 688}


def build_model(
    folder: Path,
    vocab_size: int = 2048,
    model: dict[str, int] = MODEL,
    max_positions: int = 4096,
) -> Path:
    """Save a random-init Qwen2 model of the given widths to ``folder``."""
    config = transformers.Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=model["hidden_size"],
        intermediate_size=model["intermediate_size"],
        num_hidden_layers=model["num_layers"],
        num_attention_heads=model["num_heads"],
        num_key_value_heads=model["num_heads"],
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    transformers.Qwen2ForCausalLM(config).save_pretrained(folder)
    return folder


def measure(model: Path, episodes: list[Any], steps: int) -> list[dict[str, Any]]:
    """Time naive and shared-prefix steps alternately, so both see the same machine load."""
    trainers = [
        build_trainer(
            LearnerConfig(
                model=str(model),
                lora=LoraSettings(rank=64, alpha=64),
                prompts_per_step=len(episodes),
                prompts_per_minibatch=len(episodes),
                rollouts_per_microbatch=8,
                shared_prefix=shared,
            ),
            torch.device("cpu"),
        )
        for shared in (False, True)
    ]
    seconds: list[list[float]] = [[], []]
    tokens = 0.0
    for step in range(steps + 1):  # the first step warms up
        for trainer, times in zip(trainers, seconds, strict=True):
            start = time.perf_counter()
            tokens = trainer.step(trainer.pad(episodes))["perf/total_num_tokens"]
            if step:
                times.append(time.perf_counter() - start)
    return [
        {
            "shared_prefix": shared,
            "tokens_per_step": int(tokens),
            "seconds_per_step": [round(s, 3) for s in times],
            "median_s": round(statistics.median(times), 3),
            "tokens_per_s": round(tokens / statistics.median(times), 1),
        }
        for shared, times in zip((False, True), seconds, strict=True)
    ]


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["sizes"]
    lines = [
        "# Learner throughput: naive vs shared-prefix forward",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['platform']}, {m['processor']}, {m['cpus']} CPUs, {m['torch_threads']} "
        f"torch threads; Python {m['python']}, torch {m['torch']}, transformers "
        f"{m['transformers']}, peft {m['peft']}.",
        "",
        f"Model: random Qwen2, {report['model_parameters'] / 1e6:.1f} M parameters "
        f"(hidden {MODEL['hidden_size']}, {MODEL['num_layers']} layers), LoRA r=64 on all "
        f"projections. Batch: {report['episodes']} episodes of 1x4, prompt "
        f"{s['prompt_tokens']} tokens, {s['thoughts']} thoughts of {s['thought_tokens']} "
        f"tokens, reset at h*={s['reset_index']}.",
        "",
        "| forward | tokens/step | median s/step | tokens/s |",
        "|---|---|---|---|",
    ]
    for run in report["runs"]:
        name = "shared prefix" if run["shared_prefix"] else "naive"
        lines.append(
            f"| {name} | {run['tokens_per_step']} | {run['median_s']} | {run['tokens_per_s']} |"
        )
    verdict = "met" if report["speedup"] >= GOAL else "missed"
    lines += ["", f"Speed-up: **{report['speedup']:.2f}x** (goal {GOAL}x: {verdict}).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short chains, few steps")
    parser.add_argument("--episodes", type=int, default=4, help="1x4 episodes per step")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per forward kind")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 resists a busy machine best)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = SIZES["quick" if args.quick else "full"]
    steps = args.steps or (3 if args.quick else 5)
    rng = np.random.default_rng(0)
    episodes = [random_episode(rng, f"p{i}", 2048, **sizes) for i in range(args.episodes)]
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp))
        parameters = transformers.Qwen2ForCausalLM.from_pretrained(model).num_parameters()
        runs = measure(model, episodes, steps)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "model_parameters": parameters,
        "episodes": args.episodes,
        "sizes": sizes,
        "runs": runs,
        "speedup": round(runs[1]["tokens_per_s"] / runs[0]["tokens_per_s"], 3),
        "goal": GOAL,
    }
    write_report(RESULTS, "learner_throughput", report, markdown(report))


if __name__ == "__main__":
    main()
