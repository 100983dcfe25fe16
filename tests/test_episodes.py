"""Episode construction (Algorithm 2, K x M) with the scripted backend."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from scripted_arith import NoisySolver, OutcomeScript, make_env_factory, tag

from thoughtmdp import StepOracleUnavailable, ThoughtMDPError
from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.episodes.arrays import training_arrays
from thoughtmdp.episodes.builder import EpisodeBuilder
from thoughtmdp.episodes.presets import PRESETS, episode_config
from thoughtmdp.episodes.reset_policies import ResetPolicy
from thoughtmdp.types import ResetDecision

MARK = 999_999  # a token id no re-tokenisation of text produces


class LastStep(ResetPolicy):
    """Resample only the seed's last thought."""

    name = "last"

    async def decide(self, context):
        return ResetDecision(context.seed_length, self.name)


class MarkingBackend(ScriptedBackend):
    """Appends a marker id to every sampled thought, as a model's sampled ids may differ
    from the tokenizer's encoding of the decoded text."""

    async def sample_thought(self, state_ids, sampling):
        thought = await super().sample_thought(state_ids, sampling)
        ids = (*thought.token_ids, MARK)
        return type(thought)(thought.text, ids, (*thought.logprobs, -1.0), thought.policy_version)


@pytest.fixture(scope="module")
def task():
    return ArithChainTask(num_steps=2, seed=0, size=50, test_size=10)


def build(task, tokenizer, respond, policy=None, backend_type=ScriptedBackend, **config):
    backend = backend_type(tokenizer, respond)
    builder = EpisodeBuilder(
        task,
        backend,
        make_env_factory(task, tokenizer),
        episode_config(**config),
        reset_policy=policy,
    )
    return asyncio.run(builder.build("train/0", seed=1))


@pytest.mark.parametrize(
    ("outcomes", "config", "base_tags", "seed_tags", "unused"),
    [
        ([1, 1, 0, 1, 0], {}, [0, 1, 3, 4], [2], 0),
        ([1, 0, 1, 1, 0, 1], {"num_resets": 2}, [0, 2, 3, 5], [1, 4], 0),
        ([1, 1, 1, 1, 1, 1, 1, 0], {}, [0, 1, 2, 3], [7], 3),  # draws 4, 5 and 6
        ([0, 1, 0, 1], {"base_group_size": 0, "num_resets": 2}, [], [0, 2], 1),  # draw 1
    ],
)
def test_seed_and_base_group_follow_sample_order(
    task, tokenizer, outcomes, config, base_tags, seed_tags, unused
):
    episode = build(task, tokenizer, OutcomeScript(task, outcomes), LastStep(), **config)
    base = [g for g in episode.groups if g.kind == "base"]
    assert [tag(t) for g in base for t in g.trajectories] == base_tags
    assert [tag(r.seed_trajectory) for r in episode.resets] == seed_tags
    # every draw from the prompt is trained on, seeds a reset, or is counted as unused
    assert len(episode.unused_tokens) == unused and all(n > 0 for n in episode.unused_tokens)
    for record in episode.resets:
        assert record.seed_trajectory.reward == 0.0
        assert all(record.seed_trajectory is not t for g in base for t in g.trajectories)
    assert not episode.fell_back


def test_no_failure_falls_back_to_a_base_only_group(task, tokenizer):
    episode = build(task, tokenizer, OutcomeScript(task, []), LastStep(), max_seed_attempts=6)
    assert episode.fell_back
    assert [g.kind for g in episode.groups] == ["base"]
    assert len(episode.groups[0].trajectories) == 4
    assert episode.groups[0].advantages == (0.0,) * 4
    assert len(episode.unused_tokens) == 2  # 6 draws, 4 in the group
    eight = build(
        task, tokenizer, OutcomeScript(task, []), LastStep(), **PRESETS["1x8"], max_seed_attempts=10
    )
    assert len(eight.groups[0].trajectories) == 8


def test_reset_group_continues_the_seed_prefix_token_exactly(task, tokenizer):
    episode = build(
        task, tokenizer, NoisySolver(task, 0.4), LastStep(), backend_type=MarkingBackend
    )
    (record,) = episode.resets
    reset = next(g for g in episode.groups if g.kind == "reset")
    h = reset.reset_index
    assert h == record.seed_length
    seed_prefix = record.seed_trajectory.all_thoughts[: h - 1]
    arrays = training_arrays([episode])
    first_reset_row = len(episode.groups[0].trajectories)
    expected_prefix = list(record.seed_trajectory.start.prompt_token_ids) + [
        i for t in seed_prefix for i in t.token_ids
    ]
    for row, trajectory in enumerate(reset.trajectories, start=first_reset_row):
        assert trajectory.start.thoughts == seed_prefix  # the seed's own Thought objects
        ids, mask = arrays.input_ids[row], arrays.loss_mask[row]
        n = int(arrays.attention_mask[row].sum())
        assert ids[:n][~mask[:n]].tolist() == expected_prefix
        assert ids[mask].tolist() == [i for t in trajectory.thoughts for i in t.token_ids]
        assert MARK in ids[: len(expected_prefix)].tolist()
    for row, trajectory in enumerate(episode.groups[0].trajectories):
        prompt = arrays.input_ids[row][~arrays.loss_mask[row] & arrays.attention_mask[row]]
        assert prompt.tolist() == list(trajectory.start.prompt_token_ids)


@pytest.mark.parametrize("preset", ["grpo", "1x4", "2x4", "1x8"])
@pytest.mark.parametrize("policy", ["uniform", "oracle", "self", "least_confident"])
def test_every_preset_builds_full_episodes(task, tokenizer, preset, policy):
    config = {**PRESETS[preset]}
    if preset != "grpo":
        config["reset_policy"] = policy
    backend = ScriptedBackend(
        tokenizer, NoisySolver(task, 0.3), localize=lambda prompt: "\\boxed{1}"
    )
    builder = EpisodeBuilder(
        task, backend, make_env_factory(task, tokenizer), episode_config(**config)
    )
    episodes = [asyncio.run(builder.build(f"train/{i}", seed=i)) for i in range(6)]
    for episode in episodes:
        sizes = [(g.kind, len(g.trajectories)) for g in episode.groups]
        if episode.fell_back or preset == "grpo":
            assert [kind for kind, _ in sizes] == ["base"]
            continue
        expected = (
            [("base", config.get("base_group_size", 4))] if config.get("base_group_size", 4) else []
        )
        expected += [("reset", config.get("suffix_group_size", 4))] * config.get("num_resets", 1)
        assert sizes == expected
        for group in episode.groups:
            assert np.isclose(sum(group.advantages), 0.0)
        arrays = training_arrays([episode])
        assert arrays.input_ids.shape[0] == sum(n for _, n in sizes)
    assert sum(not e.fell_back for e in episodes) >= 3


def test_same_seed_same_episode(task, tokenizer):
    backend = ScriptedBackend(tokenizer, NoisySolver(task, 0.5))
    builder = EpisodeBuilder(
        task, backend, make_env_factory(task, tokenizer), episode_config("rrpo")
    )
    first, second = (asyncio.run(builder.build("train/3", seed=5)) for _ in range(2))
    assert first.groups == second.groups
    assert first.resets == second.resets


def test_oracle_policy_needs_a_step_oracle(tokenizer):
    from thoughtmdp.envs.reasoning_gym_task import ReasoningGymTask

    task = ReasoningGymTask(size=5, test_size=5)
    backend = ScriptedBackend(tokenizer, lambda context, sampling: "\\boxed{0}")
    with pytest.raises(
        StepOracleUnavailable,
        match=r"^reset policy 'oracle' needs a step oracle; task 'reasoning_gym' has none$",
    ):
        EpisodeBuilder(task, backend, make_env_factory(task, tokenizer), episode_config("oracle"))


def test_out_of_range_choice_of_a_custom_policy_is_an_error(task, tokenizer):
    class Beyond(ResetPolicy):
        name = "beyond"

        async def decide(self, context):
            return ResetDecision(context.seed_length + 1, self.name)

    with pytest.raises(
        ThoughtMDPError, match=r"^reset policy 'beyond' chose h\* = 3, outside 1\.\.2$"
    ):
        build(task, tokenizer, OutcomeScript(task, [0]), Beyond())
