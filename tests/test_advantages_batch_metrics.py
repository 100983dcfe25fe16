"""Advantages, training arrays and episode metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from thoughtmdp import PrefixState, Thought, ThoughtMDPError, Trajectory
from thoughtmdp.episodes.advantages import group_advantages
from thoughtmdp.episodes.arrays import training_arrays
from thoughtmdp.episodes.metrics import episode_metrics, reset_positions
from thoughtmdp.types import Episode, Group, ResetDecision, ResetRecord


def test_advantages_by_hand():
    # rewards 1,0,0,0: mean 0.25, sample std sqrt(0.25) = 0.5
    assert group_advantages([1, 0, 0, 0]).tolist() == pytest.approx(
        [1.5, -0.5, -0.5, -0.5], abs=1e-5
    )
    # fractional rewards 0.5, 1: mean .75, sample std sqrt(0.125)
    assert group_advantages([0.5, 1.0]).tolist() == pytest.approx(
        [-1 / math.sqrt(2), 1 / math.sqrt(2)], abs=1e-5
    )


@pytest.mark.parametrize("rewards", [[1.0] * 4, [0.0] * 8, [0.3] * 2, [1.0], []])
def test_degenerate_groups_give_exact_zeros(rewards):
    advantages = group_advantages(rewards)
    assert advantages.tolist() == [0.0] * len(rewards)
    assert not np.isnan(advantages).any()


@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=2, max_size=12))
def test_advantages_match_a_loop(rewards):
    n = len(rewards)
    mean = sum(rewards) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1))
    expected = [0.0] * n if std == 0 else [(r - mean) / (std + 1e-6) for r in rewards]
    assert group_advantages(rewards).tolist() == pytest.approx(expected, abs=1e-9)
    assert group_advantages(rewards, normalize_std=False).tolist() == pytest.approx(
        [r - mean for r in rewards]
    )


def trajectory(prompt, prefix, sampled, reward, versions=None):
    start = PrefixState(
        "p", tuple(prompt), tuple(Thought(f"x{i}", tuple(ids)) for i, ids in enumerate(prefix))
    )
    versions = versions or [1] * len(sampled)
    thoughts = tuple(
        Thought(f"s{i}", tuple(ids), tuple(-0.1 * (k + 1) for k in range(len(ids))), v)
        for i, (ids, v) in enumerate(zip(sampled, versions, strict=True))
    )
    return Trajectory(start, thoughts, reward)


def test_training_arrays_masks_prompt_and_prefix_and_pads():
    base = Group(
        "base",
        (trajectory([1, 2], [], [[3], [4, 5]], 1.0), trajectory([1, 2], [], [[6]], 0.0)),
        (0.7, -0.7),
    )
    reset = Group(
        "reset", (trajectory([1, 2], [[3]], [[9, 9, 9]], 1.0, versions=[4]),), (0.0,), reset_index=2
    )
    arrays = training_arrays([Episode("p", (base, reset))], pad_id=-5)
    assert arrays.input_ids.shape == (3, 6)
    assert arrays.input_ids.tolist() == [
        [1, 2, 3, 4, 5, -5],
        [1, 2, 6, -5, -5, -5],
        [1, 2, 3, 9, 9, 9],
    ]
    assert arrays.loss_mask.astype(int).tolist() == [
        [0, 0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1],
    ]
    assert arrays.attention_mask.astype(int).tolist() == [[1] * 5 + [0], [1] * 3 + [0] * 3, [1] * 6]
    assert arrays.advantages.tolist() == pytest.approx([0.7, -0.7, 0.0])
    assert arrays.behaviour_logprobs[0].tolist() == pytest.approx([0, 0, -0.1, -0.1, -0.2, 0])
    assert arrays.policy_versions.tolist() == [
        [-1, -1, 1, 1, 1, -1],
        [-1, -1, 1, -1, -1, -1],
        [-1, -1, -1, 4, 4, 4],
    ]
    assert arrays.group_ids.tolist() == [0, 0, 1]
    assert arrays.prefix_lengths.tolist() == [2, 2, 3]


def test_training_arrays_need_token_ids():
    bad = Trajectory(PrefixState("p", (1,)), (Thought("no ids"),), 1.0)
    with pytest.raises(ThoughtMDPError, match=r"^thought 'no ids' has no token ids$"):
        training_arrays([Episode("p", (Group("base", (bad,), (0.0,)),))])
    with pytest.raises(ThoughtMDPError, match=r"^training_arrays needs at least one rollout$"):
        training_arrays([])


def reset_episode(h, h_s, oracle, suffix_rewards, raw="\\boxed{1}", status="ok"):
    seed = Trajectory(PrefixState("p", (1,)), tuple(Thought(str(i), (i,)) for i in range(h_s)), 0.0)
    decision = ResetDecision(h, "self", raw, status)
    groups = [
        Group(
            "base", (trajectory([1], [], [[2]], 1.0), trajectory([1], [], [[2]], 0.0)), (0.7, -0.7)
        )
    ]
    if h is not None:
        suffixes = tuple(trajectory([1], [], [[3]], r) for r in suffix_rewards)
        groups.append(
            Group("reset", suffixes, tuple(group_advantages(suffix_rewards)), reset_index=h)
        )
    return Episode("p", tuple(groups), (ResetRecord(seed, decision, oracle),))


def test_episode_metrics_by_hand():
    episodes = [
        reset_episode(2, 4, 3, [1, 1, 0, 0]),  # clean prefix (2 <= 3), position 0.5
        reset_episode(4, 4, 2, [0, 0, 0, 1]),  # erroneous prefix, position 1.0
        reset_episode(3, 4, 3, [1, 1, 1, 1]),  # clean and exact, position 0.75
        reset_episode(None, 4, 1, [], raw="no idea", status="unparsable"),  # skipped
        Episode(
            "q",
            (Group("base", (trajectory([1], [], [[2]], 1.0),) * 2, (0.0, 0.0)),),
            fell_back=True,
        ),
    ]
    metrics = episode_metrics(episodes)
    assert metrics["critic/score/mean"] == pytest.approx(6 / 10)  # 4 x (1, 0) + (1, 1)
    assert metrics["reset/count"] == 3
    assert metrics["reset/fallback_rate"] == pytest.approx(1 / 5)
    assert metrics["reset/skip_rate"] == pytest.approx(1 / 4)
    assert metrics["reset/localizer_parse_fail_rate"] == pytest.approx(1 / 4)
    assert metrics["reset/position/mean"] == pytest.approx((0.5 + 1.0 + 0.75) / 3)
    assert metrics["reset/suffix_pass_rate"] == pytest.approx(7 / 12)
    assert metrics["reset/exact_match_rate"] == pytest.approx(1 / 3)
    assert metrics["reset/clean_prefix_rate"] == pytest.approx(2 / 3)
    assert metrics["reset/correction_rate/clean"] == pytest.approx(6 / 8)
    assert metrics["reset/correction_rate/erroneous"] == pytest.approx(1 / 4)
    assert metrics["reset/correction_pass_at_m/clean"] == 1.0  # both clean groups solved once
    assert metrics["reset/correction_pass_at_m/erroneous"] == 1.0
    assert reset_positions(episodes).tolist() == [0.5, 1.0, 0.75]


def test_correction_pass_at_m_counts_groups_not_suffixes():
    episodes = [
        reset_episode(2, 4, 3, [1, 0, 0, 0]),  # clean, one of four solved
        reset_episode(1, 4, 3, [0, 0, 0, 0]),  # clean, none solved
        reset_episode(4, 4, 2, [0.5, 0.5, 0, 0]),  # erroneous, partial rewards solve nothing
    ]
    metrics = episode_metrics(episodes)
    assert metrics["reset/correction_rate/clean"] == pytest.approx(1 / 8)
    assert metrics["reset/correction_pass_at_m/clean"] == pytest.approx(1 / 2)
    assert metrics["reset/correction_rate/erroneous"] == pytest.approx(1 / 4)
    assert metrics["reset/correction_pass_at_m/erroneous"] == 0.0


def test_metrics_leave_out_empty_rates():
    metrics = episode_metrics(
        [Episode("q", (Group("base", (trajectory([1], [], [[2]], 1.0),), (0.0,)),))]
    )
    assert metrics == {"critic/score/mean": 1.0, "reset/count": 0.0, "reset/fallback_rate": 0.0}
