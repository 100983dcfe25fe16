"""A learner rank that dies or hangs ends the others' collectives within the short timeout.

Two gloo ranks join through :func:`init_distributed` with a training-collective timeout of a
second and a half; the episode hand-out waits on its own group with a long timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from test_deepspeed import free_port, rank_env

pytest.importorskip("deepspeed", reason='install with: pip install "thoughtmdp[deepspeed]"')
pytestmark = pytest.mark.slow

SHORT_S = 1.5
WORKER = textwrap.dedent(
    f"""
    import json, os, sys, time
    import numpy as np, torch, torch.distributed as dist
    from thoughtmdp.learners.model.distributed import (
        PeerLost, broadcast_episodes, init_distributed, peer_failures,
    )
    from thoughtmdp.learners.synthetic import random_episode
    from thoughtmdp.settings.deepspeed import DeepSpeedSettings

    scenario = sys.argv[1]
    settings = DeepSpeedSettings(zero_stage=2, collective_timeout_s={SHORT_S}, episode_timeout_s=60)
    device = init_distributed(settings)
    rank = dist.get_rank()
    if scenario == "stall":  # rank 0 waits for actors longer than the short timeout
        episode = random_episode(np.random.default_rng(0), "p0", 50, prompt_tokens=4)
        if rank == 0:
            time.sleep(2 * {SHORT_S})
        got = broadcast_episodes([episode] if rank == 0 else None, device)
        print("episodes", len(got), got[0].problem_id, flush=True)
    if rank == 1:
        if scenario == "dead":
            os._exit(3)
        time.sleep(20)  # alive but stuck
        sys.exit(0)
    start = time.monotonic()
    try:
        with peer_failures("the update"):
            dist.all_reduce(torch.ones(1))
    except PeerLost as error:
        print(json.dumps({{"error": str(error), "seconds": time.monotonic() - start}}))
    """
)


def start_ranks(scenario, tmp_path):
    port = free_port()
    return [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, scenario],
            env=rank_env(rank, port),
            stdout=open(tmp_path / f"{scenario}{rank}.log", "w"),
            stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]


def test_a_dead_or_stuck_rank_ends_the_others_training_collective_with_a_clear_error(tmp_path):
    runs = {scenario: start_ranks(scenario, tmp_path) for scenario in ("dead", "stall")}
    try:
        for scenario, (rank0, _) in runs.items():
            assert rank0.wait(timeout=120) == 0, (tmp_path / f"{scenario}0.log").read_text()
    finally:
        for _, rank1 in runs.values():
            rank1.kill()
            rank1.wait()
    for scenario in runs:
        log = (tmp_path / f"{scenario}0.log").read_text()
        report = json.loads(log.strip().splitlines()[-1])
        assert report["error"].startswith("learner rank 0: lost the other ranks during the update")
        assert "deepspeed.collective_timeout_s" in report["error"]
        assert report["seconds"] < SHORT_S + 5, scenario  # not the hours of the episode wait
    # The episode hand-out waited twice the short timeout and still arrived.
    stalled = (tmp_path / "stall1.log").read_text()
    assert "episodes 1 p0" in stalled
    assert runs["dead"][1].returncode == 3


@pytest.mark.parametrize("key", ["collective_timeout_s", "episode_timeout_s"])
def test_a_timeout_that_is_not_positive_is_refused_by_name(key):
    from thoughtmdp.errors import ConfigError
    from thoughtmdp.settings.deepspeed import DeepSpeedSettings
    from thoughtmdp.settings.learner import LearnerConfig

    with pytest.raises(ConfigError, match=f"deepspeed.{key}: expected a positive number"):
        LearnerConfig(deepspeed=DeepSpeedSettings(**{key: 0}))
