"""What the learner trained on, episode by episode: ``episodes.jsonl`` and ``signal_maps.jsonl``.

``episodes.jsonl`` has one line per episode a step used: its groups (kind, ``h*``, rewards,
advantages, sampled tokens), its reset records (``H_s``, the seed chain's sampled tokens,
``h*``, the oracle's step, the localiser's answer, its parse status and fallback, whether the
kept prefix was clean, the rewards of the reset group) and the sampled tokens of the draws
from the prompt that were never used (``unused_tokens``). The run's reset statistics and
plots are drawn from it.

``signal_maps.jsonl`` has, every few steps, the per-thought gradient signal of one episode
(paper Fig. 3, right): for every rollout and thought, the mean over the thought's tokens of
``g_it = (|A_i| / T_i)(1 - pi(y_it))`` under the policy about to be updated, or ``null`` for
thoughts of a reset rollout's masked prefix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from thoughtmdp.episodes.metrics import is_clean_prefix
from thoughtmdp.learners.batching import PaddedBatch
from thoughtmdp.runs.files import EPISODES_FILE, SIGNAL_MAPS_FILE
from thoughtmdp.types import Episode, Group, ResetRecord, Trajectory


def episode_record(episode: Episode) -> dict[str, Any]:
    """One episode as plain data (no token ids or texts, except the problem id)."""
    return {
        "problem_id": episode.problem_id,
        "fell_back": episode.fell_back,
        "versions": list(episode.policy_versions),
        "groups": [_group_record(g) for g in episode.groups],
        "resets": _reset_records(episode),
        "unused_tokens": list(episode.unused_tokens),
        "seconds": episode.timings.get("total_s"),
    }


def _group_record(group: Group) -> dict[str, Any]:
    return {
        "kind": group.kind,
        "reset_index": group.reset_index,
        "rewards": list(group.rewards),
        "advantages": list(group.advantages),
        "tokens": [r.num_sampled_tokens for r in group.trajectories],
    }


def _reset_records(episode: Episode) -> list[dict[str, Any]]:
    """Each reset record, with the rewards of its reset group (none when it was skipped)."""
    groups = iter(g for g in episode.groups if g.kind == "reset")
    records = []
    for record in episode.resets:
        group = next(groups) if record.decision.reset_index is not None else None
        rewards = list(group.rewards) if group is not None else []
        records.append({**_reset_record(record), "suffix_rewards": rewards})
    return records


def _reset_record(record: ResetRecord) -> dict[str, Any]:
    decision = record.decision
    return {
        "policy": decision.policy,
        "seed_length": record.seed_length,
        "seed_tokens": record.seed_trajectory.num_sampled_tokens,
        "reset_index": decision.reset_index,
        "oracle_index": record.oracle_index,
        "parse_status": decision.parse_status,
        "answer": decision.raw_text,
        "fallback": decision.fallback,
        "clean": is_clean_prefix(record),
        "seconds": record.seconds,
    }


class EpisodeLog:
    """Appends episode records and signal maps to files in ``run_dir``.

    Args:
        run_dir: The run folder.
    """

    def __init__(self, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self._episodes = open(run_dir / EPISODES_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._maps = open(run_dir / SIGNAL_MAPS_FILE, "a", encoding="utf-8")  # noqa: SIM115

    def write_episodes(self, step: int, episodes: Sequence[Episode]) -> None:
        """Record the episodes of ``step``."""
        for episode in episodes:
            self._episodes.write(json.dumps({"step": step, **episode_record(episode)}) + "\n")
        self._episodes.flush()

    def write_signal_map(self, step: int, signal_map: dict[str, Any]) -> None:
        """Record one episode's per-thought gradient signal."""
        self._maps.write(json.dumps({"step": step, **signal_map}) + "\n")
        self._maps.flush()

    def close(self) -> None:
        """Close the files."""
        self._episodes.close()
        self._maps.close()


def pick_signal_episode(episodes: Sequence[Episode]) -> int | None:
    """Index of the first episode whose base and reset groups both carry gradient (``A_i != 0``)."""
    for index, episode in enumerate(episodes):
        kinds = {g.kind for g in episode.groups if any(a != 0 for a in g.advantages)}
        if kinds == {"base", "reset"}:
            return index
    return None


@torch.no_grad()
def signal_map(
    engine: Any, batch: PaddedBatch, temperature: float, rows_per_pass: int = 8
) -> dict[str, Any]:
    """Per-thought mean gradient signal of every rollout of one episode (paper App. 14).

    The log-probabilities come from forward passes without gradient, ``rows_per_pass``
    rollouts at a time, so the map never costs more memory than an update's micro-batch.

    Args:
        engine: The learner's engine (every rank calls this: ZeRO-3 gathers weights).
        batch: The episode and its arrays (one episode of the step's batch, ``batch.select``).
        temperature: The sampling temperature (logits are divided by it).
        rows_per_pass: Rollouts scored in one forward pass (``rollouts_per_microbatch``).

    Returns:
        ``{"problem_id", "rollouts": [{"kind", "reset_index", "reward", "advantage",
        "thoughts": [{"masked", "signal"}]}]}``.
    """
    from thoughtmdp.learners.model.policy import token_logprobs

    (episode,), arrays = batch.episodes, batch.arrays
    ids = torch.from_numpy(arrays.input_ids).to(engine.device)  # (B, T)
    with torch.no_grad():
        parts = [
            token_logprobs(engine, ids[row : row + rows_per_pass], temperature).float().cpu()
            for row in range(0, ids.shape[0], max(1, rows_per_pass))
        ]
    logprobs = torch.cat(parts)  # (B, T)
    mask = torch.from_numpy(arrays.loss_mask).float()  # (B, T)
    tokens = mask.sum(-1).clamp(min=1)  # (B,) T_i
    advantages = torch.from_numpy(arrays.advantages).abs()  # (B,)
    signal = (advantages / tokens)[:, None] * (1 - logprobs.exp()) * mask  # (B, T) g_it
    rows = []
    row = 0
    for group in episode.groups:
        for trajectory, advantage in zip(group.trajectories, group.advantages, strict=True):
            rows.append(
                {
                    "kind": group.kind,
                    "reset_index": group.reset_index,
                    "reward": trajectory.reward,
                    "advantage": advantage,
                    "thoughts": _thought_signals(trajectory, signal[row]),
                }
            )
            row += 1
    return {"problem_id": episode.problem_id, "rollouts": rows}


def _thought_signals(trajectory: Trajectory, signal: torch.Tensor) -> list[dict[str, Any]]:
    """Mean ``g_it`` over each thought's tokens; prefix thoughts are masked (``None``)."""
    start = trajectory.start
    cursor = len(start.prompt_token_ids or ())
    out = []
    for k, thought in enumerate(trajectory.all_thoughts):
        n = len(thought.token_ids or ())
        masked = k < len(start.thoughts)
        value = None if masked or n == 0 else float(signal[cursor : cursor + n].mean())
        out.append({"masked": masked, "signal": value})
        cursor += n
    return out
