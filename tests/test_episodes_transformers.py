"""Full episodes with a real language model: the transformers backend on the tiny model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from thoughtmdp import (
    SamplingParams,
    ThoughtMDPEnv,
    episode_config,
    episode_metrics,
    training_arrays,
)
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.episodes.reset_policies import SelfLocalization


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    from thoughtmdp.agents.backends.transformers import TransformersBackend

    backend = TransformersBackend(tiny_model_dir)
    yield backend
    backend.close()


@pytest.mark.parametrize("preset", ["grpo", "1x4", "2x4", "1x8"])
def test_presets_build_episodes_with_a_real_model(backend, preset):
    from thoughtmdp.episodes.builder import EpisodeBuilder

    task = ArithChainTask(num_steps=2, size=20, test_size=5)
    tokenizer = backend.tokenizer
    config = episode_config(preset)
    # short thoughts and chains keep a random model's rollouts cheap; they all fail
    builder = EpisodeBuilder(
        task,
        backend,
        make_env=lambda: ThoughtMDPEnv(task, tokenizer=tokenizer, max_thoughts=3),
        config=config,
        sampling=SamplingParams(temperature=1.0, top_p=0.95, max_tokens=6),
        reset_policy=SelfLocalization(max_tokens=8),
    )
    episode = asyncio.run(builder.build("train/1", seed=3))
    expected = {
        "grpo": [("base", 8)],
        "1x4": [("base", 4), ("reset", 4)],
        "2x4": [("reset", 4)] * 2,
        "1x8": [("reset", 8)],
    }
    assert [(g.kind, len(g.trajectories)) for g in episode.groups] == expected[preset]
    arrays = training_arrays([episode], pad_id=backend.pad_id)
    for row, trajectory in enumerate(episode.trajectories):
        sampled = [i for t in trajectory.thoughts for i in t.token_ids]
        assert arrays.input_ids[row][arrays.loss_mask[row]].tolist() == sampled
        lps = [lp for t in trajectory.thoughts for lp in t.logprobs]
        assert np.allclose(arrays.behaviour_logprobs[row][arrays.loss_mask[row]], lps)
        assert all(lp <= 0 for lp in lps)
        for thought in trajectory.thoughts:
            assert len(thought.token_ids) <= 6
            assert tokenizer.decode(list(thought.token_ids)).startswith(thought.text)
    for record in episode.resets:
        assert record.decision.policy == "self"
        assert record.decision.raw_text is not None
        if record.decision.parse_status != "ok":
            assert record.decision.fallback == "uniform"
    metrics = episode_metrics([episode])
    if preset != "grpo":
        assert metrics["reset/localizer_parse_fail_rate"] == pytest.approx(
            np.mean([r.decision.parse_status != "ok" for r in episode.resets])
        )
