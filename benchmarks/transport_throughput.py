"""Transport throughput: 1x4 episodes per second and MB/s from an actor to the learner over tcp.

An :class:`EpisodeSender` (asyncio, its own thread) streams realistic 1x4 episodes (8
rollouts of ``thoughts`` thoughts of ``thought_tokens`` tokens, every token with its
log-probability and policy version, a 256-token prompt) over loopback tcp to an
:class:`EpisodeReceiver`; the main thread takes them out as the learner would. Throughput is
episodes taken over the wall time from the first send to the last take (encoding, the socket,
decoding and credit flow included). Encoding and decoding are also timed alone, per episode.

The cost is set against the learner: its time per episode is the episode's token count
divided by the shared-prefix tokens/s of ``results/learner_throughput.json`` (same machine,
random Qwen2 with LoRA r=64). The share is transport time per episode over that learner
time; the goal is at most 1 %. Both run on the CPU here, and the receiver works on its own
thread, so the share overstates what a learner on an accelerator loses to the transport.

Usage: ``python benchmarks/transport_throughput.py --quick`` (seconds) or without ``--quick``
for more episodes. Writes ``benchmarks/results/transport_throughput.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq
from report_files import RESULTS, write_report

from thoughtmdp.learners.synthetic import random_episode
from thoughtmdp.transport import EpisodeReceiver, EpisodeSender
from thoughtmdp.types import Episode
from thoughtmdp.wire import decode, encode_episode

GOAL = 0.01
"""Largest share of the learner's time per episode the transport may cost."""
SIZES = {"prompt_tokens": 256, "thoughts": 20, "thought_tokens": 64, "reset_index": 10}
VOCAB = 151_936  # Qwen2.5's: token ids need the full 32 bits, as in a real run


def make_episodes(count: int) -> list[Episode]:
    """Distinct synthetic 1x4 episodes of :data:`SIZES`."""
    rng = np.random.default_rng(0)
    return [random_episode(rng, f"train/{i}", VOCAB, **SIZES) for i in range(count)]


def episode_tokens(episode: Episode) -> int:
    """Tokens the learner processes for one episode (every rollout, prompt and prefix included)."""
    count = 0
    for group in episode.groups:
        for t in group.trajectories:
            count += len(t.start.prompt_token_ids or ())
            count += sum(len(h.token_ids or ()) for h in t.all_thoughts)
    return count


def codec_seconds(episodes: list[Episode], repeats: int) -> dict[str, float]:
    """Median seconds to encode and to decode one episode, and its size in bytes."""
    encode_s, decode_s = [], []
    for _ in range(repeats):
        for episode in episodes:
            start = time.perf_counter()
            frames = encode_episode(episode, "actor-0")
            encode_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            decode(frames)
            decode_s.append(time.perf_counter() - start)
    frames = encode_episode(episodes[0], "actor-0")
    size = sum(len(memoryview(f).cast("B")) for f in frames)
    return {
        "encode_s": statistics.median(encode_s),
        "decode_s": statistics.median(decode_s),
        "bytes": size,
    }


def stream(episodes: list[Episode], total: int, window: int) -> float:
    """Seconds to send ``total`` episodes over loopback tcp and take them all out."""
    with EpisodeReceiver("tcp://127.0.0.1:0", window=window) as receiver:
        started = threading.Event()

        async def send() -> None:
            async with EpisodeSender(receiver.address, "actor-0", hello_interval=0.5) as sender:
                started.set()
                for i in range(total):
                    await sender.send(episodes[i % len(episodes)])
                await asyncio.sleep(1.0)  # let the socket flush before it closes

        thread = threading.Thread(target=lambda: asyncio.run(send()), daemon=True)
        thread.start()
        started.wait()
        start = time.perf_counter()
        for _ in range(total):
            receiver.get(timeout=60)
        elapsed = time.perf_counter() - start
        thread.join(timeout=10)
    return elapsed


def learner_seconds_per_episode(tokens: int) -> tuple[float | None, str]:
    """The learner's time for one episode, from the learner benchmark's shared-prefix run."""
    file = RESULTS / "learner_throughput.json"
    if not file.is_file():
        return None, "results/learner_throughput.json is missing: run that benchmark first"
    report = json.loads(file.read_text())
    run = next(r for r in report["runs"] if r["shared_prefix"])
    how = (
        f"{tokens} tokens per episode / {run['tokens_per_s']} tokens/s (shared-prefix update "
        f"of `{report['command']}` on this machine)"
    )
    return tokens / run["tokens_per_s"], how


def machine() -> dict[str, Any]:
    """Platform, CPU and the versions that set the transport's speed."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return {
        "platform": platform.platform(),
        "processor": cpu,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "msgpack": ".".join(str(v) for v in msgpack.version),
        "numpy": np.__version__,
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown page."""
    m, s, r = report["machine"], report["sizes"], report["results"]
    share = r["learner_share"]
    verdict = "n/a" if share is None else f"{100 * share:.3f} %"
    met = (
        ""
        if share is None
        else (" (goal ≤ 1 %: met)" if share <= GOAL else " (goal ≤ 1 %: MISSED)")
    )
    lines = [
        "# Transport throughput: actor to learner over loopback tcp",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Machine: {m['platform']}, {m['processor']}, {m['cpus']} CPUs; Python {m['python']}, "
        f"pyzmq {m['pyzmq']} (libzmq {m['libzmq']}), msgpack {m['msgpack']}, numpy {m['numpy']}.",
        "",
        f"Episodes: 1x4 (8 rollouts), prompt {s['prompt_tokens']} tokens, {s['thoughts']} thoughts "
        f"of {s['thought_tokens']} tokens with log-probabilities and versions, reset at "
        f"h*={s['reset_index']}; {r['tokens_per_episode']} tokens for the learner, "
        f"{r['bytes_per_episode'] / 1e6:.2f} MB on the wire. {report['episodes']} episodes sent, "
        f"window {report['window']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| episodes/s (send → take, wall) | {r['episodes_per_s']:.1f} |",
        f"| MB/s | {r['mb_per_s']:.1f} |",
        f"| transport ms/episode (wall) | {1e3 * r['transport_s']:.2f} |",
        f"| encode ms/episode (actor) | {1e3 * r['encode_s']:.2f} |",
        f"| decode ms/episode (learner's receiver thread) | {1e3 * r['decode_s']:.2f} |",
        f"| learner s/episode | {r['learner_s']} |",
        f"| transport share of the learner's time | {verdict}{met} |",
        "",
        f"Learner time per episode: {r['learner_how']}. Share = transport ms/episode (wall) / "
        "learner s/episode.",
        "",
        "Caveat: the learner here is a 3.7 M-parameter model on 2 CPU cores. The receiver decodes "
        "on its own thread, overlapping the update, so what a faster learner (an accelerator) "
        "pays is about the decode time per episode, not the wall time; the share grows with the "
        "learner's speed.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Measure, then write ``results/transport_throughput.{json,md}``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer episodes (seconds)")
    args = parser.parse_args()
    total, window = (100, 8) if args.quick else (1000, 8)
    episodes = make_episodes(8)
    codec = codec_seconds(episodes, repeats=2 if args.quick else 10)
    stream(episodes, 10, window)  # warm-up: connect, first allocations
    elapsed = stream(episodes, total, window)
    tokens = episode_tokens(episodes[0])
    transport_s = elapsed / total
    learner_s, how = learner_seconds_per_episode(tokens)
    results = {
        "episodes_per_s": total / elapsed,
        "mb_per_s": total * codec["bytes"] / elapsed / 1e6,
        "transport_s": transport_s,
        "encode_s": codec["encode_s"],
        "decode_s": codec["decode_s"],
        "bytes_per_episode": codec["bytes"],
        "tokens_per_episode": tokens,
        "learner_s": None if learner_s is None else round(learner_s, 3),
        "learner_how": how,
        "learner_share": None if learner_s is None else transport_s / learner_s,
    }
    command = "python benchmarks/transport_throughput.py" + (" --quick" if args.quick else "")
    report = {
        "command": command,
        "machine": machine(),
        "sizes": SIZES,
        "episodes": total,
        "window": window,
        "results": results,
        "goal": GOAL,
    }
    write_report(RESULTS, "transport_throughput", report, markdown(report))


if __name__ == "__main__":
    main()
