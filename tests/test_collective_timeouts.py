"""A learner rank that dies or hangs ends the others' collectives within the short timeout.

Two gloo ranks join through :func:`init_distributed` with a training-collective timeout of a
second and a half; the episode hand-out waits on its own group with a long timeout. The rank
left behind ends through :func:`exit_on_peer_loss`, as the learner does, with its own exit
code: tearing down a group with a timed-out collective in it can otherwise abort the process.
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
LOST_CODE = 7
WORKER = textwrap.dedent(
    f"""
    import json, os, sys, time
    import numpy as np, torch, torch.distributed as dist
    from thoughtmdp.learners.model.distributed import (
        PeerLost, broadcast_episodes, exit_on_peer_loss, init_distributed, peer_failures,
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
    with exit_on_peer_loss("rank 0", code={LOST_CODE}):
        try:
            with peer_failures("the update"):
                dist.all_reduce(torch.ones(1))
        except PeerLost as error:
            report = {{"error": str(error), "seconds": time.monotonic() - start}}
            print(json.dumps(report), flush=True)
            raise
    print("the collective succeeded", flush=True)
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
            code = rank0.wait(timeout=120)
            assert code == LOST_CODE, (tmp_path / f"{scenario}0.log").read_text()
    finally:
        for _, rank1 in runs.values():
            rank1.kill()
            rank1.wait()
    for scenario in runs:
        lines = (tmp_path / f"{scenario}0.log").read_text().strip().splitlines()
        report = json.loads(next(line for line in lines if line.startswith("{")))
        assert report["error"].startswith("learner rank 0: lost the other ranks during the update")
        assert "deepspeed.collective_timeout_s" in report["error"]
        assert report["seconds"] < SHORT_S + 5, scenario  # not the hours of the episode wait
        assert lines[-1] == f"rank 0: {report['error']}"
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


def test_a_rank_that_lost_its_peers_exits_with_its_code_and_removes_its_shared_memory(tmp_path):
    buffer = tmp_path / "deepspeed_allreduce_buffer"
    buffer.write_bytes(b"x")
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from thoughtmdp.learners.model import distributed

        distributed._files_to_remove.append(Path(sys.argv[1]))
        with distributed.exit_on_peer_loss("thoughtmdp learner", code=5):
            raise distributed.PeerLost("learner rank 0: lost the other ranks during the update")
        print("not reached")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(buffer)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 5, done.stderr
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last == "thoughtmdp learner: learner rank 0: lost the other ranks during the update"
    assert not buffer.exists()
