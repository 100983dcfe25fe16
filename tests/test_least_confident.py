"""The ``least_confident`` reset policy: the thought sampled with the lowest log-probabilities."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from thoughtmdp import PrefixState, Thought, ThoughtMDPError, Trajectory
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.episodes.presets import episode_config
from thoughtmdp.episodes.reset_policies import (
    LeastConfidentReset,
    ResetContext,
    make_reset_policy,
)
from thoughtmdp.types import ResetDecision

TASK = ArithChainTask(num_steps=4, seed=0, size=20, test_size=5)


def sampled(*logprobs):
    """A thought with one token per log-probability, the last one its stop token."""
    return Thought("t", token_ids=tuple(range(len(logprobs))), logprobs=logprobs)


def decide(*thoughts, statistic="mean"):
    chain = Trajectory(PrefixState("train/0", (1, 2)), thoughts, reward=0.0)
    context = ResetContext(chain, TASK, None, np.random.default_rng(0))
    return asyncio.run(LeastConfidentReset(statistic).decide(context))


CHAIN = (
    sampled(-0.1, -0.2, 0.0),  # mean -0.15, min -0.2
    sampled(-2.0, -0.0),  # mean -2.0, min -2.0
    sampled(-0.5, -0.5, -0.5, -0.01),  # mean -0.5, min -0.5
    sampled(-3.0, -0.1, -0.1, -0.1, -0.1),  # mean -0.825, min -3.0
)


@pytest.mark.parametrize(("statistic", "index"), [("mean", 2), ("min", 4)])
def test_picks_the_least_confident_thought(statistic, index):
    decision = decide(*CHAIN, statistic=statistic)
    assert decision == ResetDecision(index, "least_confident", parse_status="ok")


@pytest.mark.parametrize("statistic", ["mean", "min"])
def test_the_stop_token_is_left_out(statistic):
    # with its stop token (-5.0) the second thought would score lowest
    assert decide(sampled(-1.0, -0.0), sampled(-0.9, -5.0), statistic=statistic).reset_index == 1


def test_a_tie_goes_to_the_earliest_thought():
    assert decide(sampled(-0.1, 0.0), sampled(-1.0, 0.0), sampled(-0.5, -1.5, 0.0)).reset_index == 2


def test_a_single_token_thought_keeps_its_token():
    assert decide(sampled(-0.7), sampled(-0.5, -0.0)).reset_index == 1
    assert decide(sampled(-0.1), sampled(-0.5, -0.0), statistic="min").reset_index == 2


@pytest.mark.parametrize("missing", [Thought("no tokens"), Thought("no logprobs", (5, 6))])
def test_missing_logprobs_name_the_thought(missing):
    message = (
        r"^reset policy 'least_confident' needs log-probabilities, "
        r"but thought 2 of the seed chain has none"
    )
    with pytest.raises(ThoughtMDPError, match=message):
        decide(sampled(-0.1, 0.0), missing, sampled(-3.0, 0.0))


def test_bad_statistic():
    with pytest.raises(ThoughtMDPError, match=r"^statistic must be 'mean' or 'min', got 'median'$"):
        make_reset_policy("least_confident", statistic="median")


def test_registered_with_a_preset():
    assert isinstance(make_reset_policy("least_confident"), LeastConfidentReset)
    assert make_reset_policy("least_confident", statistic="min").statistic == "min"
    assert episode_config("1x4", "least_confident").reset_policy == "least_confident"
