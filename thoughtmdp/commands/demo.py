"""``thoughtmdp demo``: one reset episode on ArithChain, driven by a scripted noisy solver.

No model is involved: the solver is :func:`thoughtmdp.envs.arith_chain.next_reference_thought`,
which slips with a set probability. The demo shows the mechanics of an episode: base
rollouts until the first failure (the seed chain), a reset step ``h*``, and suffix rollouts
resampled from the prefix before ``h*``.
"""

from __future__ import annotations

import argparse

import numpy as np

from thoughtmdp.commands import Command
from thoughtmdp.mdp.env import ThoughtMDPEnv
from thoughtmdp.types import PrefixState, Thought, Trajectory

MAX_BASE_ROLLOUTS = 16


def arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options: problem seed, chain length, slip rate, reset policy, suffixes."""
    parser.add_argument("--seed", type=int, default=0, help="seed of problems and solver")
    parser.add_argument("--num-steps", type=int, default=4, help="operations per problem")
    parser.add_argument(
        "--error-rate", type=float, default=0.25, help="solver's chance of a slip per step"
    )
    parser.add_argument(
        "--reset-policy",
        choices=["oracle", "uniform"],
        default="oracle",
        help="how the reset step is picked from the failed seed chain",
    )
    parser.add_argument(
        "--suffixes", type=int, default=4, help="suffix rollouts from the reset state (M)"
    )


def run(args: argparse.Namespace) -> int:
    """``thoughtmdp demo``: :func:`run_demo` with the parsed arguments."""
    return run_demo(
        seed=args.seed,
        num_steps=args.num_steps,
        error_rate=args.error_rate,
        reset_policy=args.reset_policy,
        suffixes=args.suffixes,
    )


def run_demo(
    seed: int = 0,
    num_steps: int = 4,
    error_rate: float = 0.25,
    reset_policy: str = "oracle",
    suffixes: int = 4,
) -> int:
    """Print one episode; returns the exit code (1 when no rollout failed)."""
    from rich.console import Console
    from rich.table import Table

    from thoughtmdp.envs.arith_chain import next_reference_thought

    console = Console()
    env = ThoughtMDPEnv("arith_chain", num_steps=num_steps, seed=seed)
    rng = np.random.default_rng(seed)

    def rollout(prefix: PrefixState | None = None) -> tuple[tuple[str, ...], float]:
        obs, _ = env.reset(options={"problem": 0, "prefix": prefix})
        while True:
            thought = next_reference_thought(env.problem, obs["thoughts"], error_rate, rng)
            obs, reward, terminated, truncated, _ = env.step(thought)
            if terminated or truncated:
                return obs["thoughts"], reward

    problem = env.problems[0]
    console.print(f"[bold]Problem[/] {problem.id}: {problem.question} = {problem.answer}")
    console.print(f"Scripted solver slips with probability {error_rate} per step.\n")
    base = Table("rollout", "thoughts", "reward", title="Base rollouts until the first failure")
    seed_chain: tuple[str, ...] | None = None
    for i in range(MAX_BASE_ROLLOUTS):
        thoughts, reward = rollout()
        base.add_row(str(i), " | ".join(thoughts), f"{reward:.0f}")
        if reward < 1:
            seed_chain = thoughts
            break
    console.print(base)
    if seed_chain is None:
        console.print(
            f"No failure in {MAX_BASE_ROLLOUTS} rollouts: the episode falls back to GRPO."
        )
        return 1
    reset_index = _pick_reset(env, seed_chain, reset_policy, rng)
    prefix = PrefixState(problem.id, None, tuple(Thought(t) for t in seed_chain[: reset_index - 1]))
    console.print(
        f"\nSeed chain has H_s = {len(seed_chain)} thoughts; {reset_policy} reset picks "
        f"h* = {reset_index}: resample from the {reset_index - 1} thought(s) before it."
    )
    group = Table("suffix", "prefix (kept)", "resampled thoughts", "reward", title="Reset group")
    kept = " | ".join(seed_chain[: reset_index - 1]) or "(prompt only)"
    for i in range(suffixes):
        thoughts, reward = rollout(prefix)
        group.add_row(str(i), kept, " | ".join(thoughts[reset_index - 1 :]), f"{reward:.0f}")
    console.print(group)
    console.print("Only the resampled thoughts of the reset group would carry loss.")
    return 0


def _pick_reset(
    env: ThoughtMDPEnv, chain: tuple[str, ...], policy: str, rng: np.random.Generator
) -> int:
    if policy == "uniform":
        return int(rng.integers(1, len(chain) + 1))
    start = PrefixState(env.problem.id)
    trajectory = Trajectory(start, tuple(Thought(t) for t in chain))
    return env.task.first_error_step(trajectory) or len(chain)


COMMAND = Command(
    "demo",
    help="roll one reset episode through the ArithChain env with a scripted noisy solver",
    run=run,
    arguments=arguments,
)
