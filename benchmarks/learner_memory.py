"""Learner memory: peak activation memory and tokens/s of one micro-batch, before and after.

One rollout of ``--tokens`` tokens (4096 by default) through a randomly initialised Qwen2 of a
few narrow layers with Qwen's real vocabulary (152,064 tokens), forward and backward of the
summed log-probabilities, float32 on the CPU. At these widths the output layer dominates, as
it does at 7B-14B with 4k-token rollouts:

- ``full-logits``: the learner's former path, the whole ``(B, T, V)`` logits, their float32,
  scaled and log-softmax copies and their gradient (``next_token_logits`` + ``gather_logprobs``
  + ``token_entropy``);
- ``chunked``: ``token_scores``, the output layer and log-softmax a chunk of positions at a
  time (``ChunkedHeadScores``);
- ``chunked+checkpointing``: the same with gradient checkpointing of the decoder layers;
- ``no-grad full-logits`` / ``no-grad chunked``: the gradient-free scoring of the reference
  pass and of ``signal_map``.

The full-logits cases run at ``--before-tokens`` (1024 by default): their memory grows linearly
with the tokens (about 10 GiB more at 4096, more than a shared 24 GB machine spares), so they
are compared per token. Each case runs in a fresh process; its peak is the process's peak
resident memory during the step (``VmHWM`` after resetting it) minus the resident memory before
it, so model weights and the interpreter are not counted. Usage: ``python
benchmarks/learner_memory.py`` (a few minutes on 2 cores). Writes
``benchmarks/results/learner_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from learner_throughput import build_model
from report_files import RESULTS, write_report

from thoughtmdp.learners import LearnerConfig, LoraSettings
from thoughtmdp.learners.model.policy import (
    gather_logprobs,
    load_policy,
    next_token_logits,
    token_entropy,
    token_scores,
)

VOCAB = 152_064  # Qwen2.5's
MODEL = {"hidden_size": 256, "num_layers": 2, "num_heads": 4, "intermediate_size": 688}
CASES = (
    "full-logits",
    "chunked",
    "chunked+checkpointing",
    "no-grad full-logits",
    "no-grad chunked",
)
GOAL = 0.25
"""Peak activation memory per token after, as a fraction of before, at 4k tokens."""


def full_logits_scores(model: Any, ids: torch.Tensor) -> torch.Tensor:
    logits = next_token_logits(model, ids, 1)
    token_entropy(logits, 0.7)
    return gather_logprobs(logits, ids[:, 1:], 0.7)


def resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_case(case: str, folder: str, tokens: int) -> dict[str, Any]:
    """One case in this process: peak activation memory (MiB) and tokens/s."""
    torch.set_num_threads(max(1, (os.cpu_count() or 2)))
    config = LearnerConfig(
        model=folder,
        lora=LoraSettings(rank=8, alpha=16),
        gradient_checkpointing=case.endswith("checkpointing"),
    )
    model = load_policy(config)
    ids = torch.randint(1, VOCAB, (1, tokens), generator=torch.Generator().manual_seed(0))
    grad = not case.startswith("no-grad")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = resident_kib("VmRSS")
    start = time.perf_counter()
    with torch.set_grad_enabled(grad):
        if "full-logits" in case:
            logprobs = full_logits_scores(model, ids)
        else:
            logprobs = token_scores(model, ids, 0.7).logprobs
        if grad:
            logprobs.sum().backward()
    seconds = time.perf_counter() - start
    peak_mib = (resident_kib("VmHWM") - before) / 1024
    return {
        "case": case,
        "tokens": tokens,
        "peak_activation_mib": round(peak_mib, 1),
        "kib_per_token": round(peak_mib * 1024 / tokens, 1),
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Learner memory: one micro-batch, full-vocabulary logits vs chunked scoring",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; load average at start {report['load']}  ",
        f"Model: Qwen2, {MODEL['num_layers']} layers of width {MODEL['hidden_size']}, "
        f"vocabulary {VOCAB:,}, float32, one rollout of {report['tokens']} tokens "
        f"({report['before_tokens']} for the full-logits cases).",
        "",
        "| case | tokens | peak activation MiB | KiB/token | s | tokens/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['case']} | {r['tokens']} | {r['peak_activation_mib']} | {r['kib_per_token']} | "
            f"{r['seconds']} | {r['tokens_per_s']} |"
        )
    lines += [
        "",
        f"Chunked / full-logits peak per token (training): {report['ratio']:.3f} "
        f"(goal: at most {GOAL}).",
        "",
        "The machine is shared: times vary with its load; memory does not.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--before-tokens", type=int, default=1024)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)  # one case, in a child
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.model, args.tokens)))
        return
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        folder = build_model(Path(scratch) / "model", VOCAB, MODEL, max_positions=8192)
        results = []
        for case in CASES:
            command = [sys.executable, __file__, "--case", case, "--model", str(folder)]
            tokens = args.before_tokens if "full-logits" in case else args.tokens
            done = subprocess.run(
                [*command, "--tokens", str(tokens)], capture_output=True, text=True
            )
            if done.returncode:
                raise SystemExit(f"{case} failed:\n{done.stderr[-3000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(results[-1], flush=True)
    by_case = {r["case"]: r for r in results}
    report = {
        "command": "python benchmarks/learner_memory.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "load": round(load, 1),
        "tokens": args.tokens,
        "before_tokens": args.before_tokens,
        "results": results,
        "ratio": by_case["chunked"]["kib_per_token"] / by_case["full-logits"]["kib_per_token"],
    }
    write_report(RESULTS, "learner_memory", report, markdown(report))


if __name__ == "__main__":
    main()
