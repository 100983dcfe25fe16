"""A step's episodes are checked without padding, padded once, and sliced for mini-batches."""

from __future__ import annotations

import queue
import re
import sys
from dataclasses import fields

import numpy as np
import pytest
from test_learner import config, hand_episode

from thoughtmdp.episodes.arrays import training_arrays
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.learners import LearnerLoop, build_trainer
from thoughtmdp.learners.batching import PaddedBatch
from thoughtmdp.learners.episode_log import signal_map
from thoughtmdp.learners.stream import check_episode
from thoughtmdp.learners.synthetic import random_episode
from thoughtmdp.types import Episode, Group, PrefixState, Thought, Trajectory


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def episodes(count=3):
    rng = np.random.default_rng(0)
    return [random_episode(rng, f"p{i}", 50, prompt_tokens=4 + 3 * i) for i in range(count)]


def assert_same_arrays(found, expected):
    for name in (f.name for f in fields(expected)):
        a, b = getattr(found, name), getattr(expected, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


@pytest.mark.parametrize(("start", "stop"), [(0, 3), (0, 1), (1, 3), (2, 3)])
def test_a_selection_equals_padding_its_episodes_alone(start, stop):
    batch = PaddedBatch.pad(episodes(), pad_id=7)
    chosen = batch.select(start, stop)
    assert chosen.episodes == tuple(episodes()[start:stop])
    assert_same_arrays(chosen.arrays, training_arrays(chosen.episodes, pad_id=7))


def test_minibatches_are_consecutive_selections():
    batch = PaddedBatch.pad(episodes(), pad_id=0)
    chunks = batch.minibatches(2)
    assert [[e.problem_id for e in c.episodes] for c in chunks] == [["p0", "p1"], ["p2"]]
    assert_same_arrays(chunks[1].arrays, training_arrays(episodes()[2:]))
    assert batch.minibatches(3) == [batch]


def test_a_step_pads_its_episodes_once(tiny_model_dir, tokenizer, tmp_path, monkeypatch):
    calls = []

    def counting(found, pad_id=0):
        calls.append([e.problem_id for e in found])
        return training_arrays(found, pad_id)

    for name, module in list(sys.modules.items()):
        if name.startswith("thoughtmdp.learners") and hasattr(module, "training_arrays"):
            monkeypatch.setattr(module, "training_arrays", counting)
    source: queue.Queue = queue.Queue()
    for i in range(2):
        source.put(("actor-0", hand_episode(tokenizer, f"train/{i}")))
    settings = config(tiny_model_dir, tmp_path, prompts_per_minibatch=1, signal_map_every=1)
    loop = LearnerLoop(settings, build_trainer(settings), source=source)
    try:
        metrics = loop.run_step()
    finally:
        loop.close()
    assert calls == [["train/0", "train/1"]]
    assert metrics["perf/rollouts"] == 8.0
    assert (tmp_path / "signal_maps.jsonl").read_text().count("\n") == 1


def test_a_selected_episode_maps_as_if_padded_alone(tiny_model_dir, tokenizer):
    trainer = build_trainer(config(tiny_model_dir))
    short = hand_episode(tokenizer, "train/0")
    long = random_episode(np.random.default_rng(0), "p", 50, prompt_tokens=40)
    alone = signal_map(trainer.engine, trainer.pad([short]), 1.0)
    selected = signal_map(trainer.engine, trainer.pad([long, short]).select(1, 2), 1.0)
    assert selected == alone


def rollout(prompt=(1, 2), prefix=(), sampled=((3,),)):
    start = PrefixState("p", prompt, tuple(Thought(f"t{i}", ids) for i, ids in enumerate(prefix)))
    return Trajectory(start, tuple(Thought(f"s{i}", ids) for i, ids in enumerate(sampled)), 1.0)


def episode(*groups):
    return Episode("p", tuple(Group("reset", rows, (0.0,) * len(rows), 2) for rows in groups))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Episode("p", ()), "episode 'p' has no rollouts"),
        (
            episode((rollout(),), (rollout(), rollout(prompt=None))),
            "episode 'p', group 1, rollout 1: start.prompt_token_ids is missing",
        ),
        (
            episode((rollout(prefix=((4,), None)),)),
            "episode 'p', group 0, rollout 0: start.thoughts[1].token_ids is missing",
        ),
        (
            episode((rollout(sampled=((3,), (4,), None)),)),
            "episode 'p', group 0, rollout 0: thoughts[2].token_ids is missing",
        ),
        (
            episode((rollout(prefix=((4,),)), rollout(prefix=((5,),)))),
            "episode 'p', group 0, rollout 1: start token ids differ from rollout 0's",
        ),
    ],
)
def test_the_stream_rejects_an_untrainable_episode_naming_the_field(bad, message):
    with pytest.raises(ThoughtMDPError, match=f"^{re.escape(message)}$"):
        check_episode(bad)


def test_the_stream_accepts_what_the_learner_trains_on(tokenizer):
    check_episode(hand_episode(tokenizer))
    check_episode(episode((rollout(prefix=((4,),)), rollout(prefix=((4,),), sampled=()))))
