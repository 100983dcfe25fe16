"""The learner's episode log, signal maps and graceful stop."""

from __future__ import annotations

import dataclasses
import json
import queue
import threading

import pytest
import torch
from test_learner import config, hand_episode

from thoughtmdp.episodes.arrays import training_arrays
from thoughtmdp.learners import LearnerLoop, build_trainer
from thoughtmdp.learners.checkpoint import latest_checkpoint
from thoughtmdp.learners.episode_log import episode_record, pick_signal_episode, signal_map
from thoughtmdp.learners.model.policy import token_logprobs
from thoughtmdp.learners.stream import BatchAssembler, StopRequested


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_episode_record_pairs_each_reset_with_its_group(tokenizer):
    episode = dataclasses.replace(hand_episode(tokenizer, "train/3"), unused_tokens=(5,))
    record = episode_record(episode)
    assert record["problem_id"] == "train/3"
    assert [g["kind"] for g in record["groups"]] == ["base", "reset"]
    assert record["groups"][1]["reset_index"] == 2
    assert record["groups"][0]["rewards"] == [1.0, 0.0]
    (reset,) = record["resets"]
    assert reset["seed_length"] == 2 and reset["reset_index"] == 2
    seed = episode.resets[0].seed_trajectory
    assert reset["seed_tokens"] == sum(len(t.token_ids) for t in seed.thoughts) > 0
    assert record["unused_tokens"] == [5]
    assert reset["suffix_rewards"] == [1.0, 0.0]
    assert reset["clean"] is None  # no oracle in this episode
    json.dumps(record)  # plain data


def test_signal_map_matches_the_formula_and_masks_the_prefix(tiny_model_dir, tokenizer):
    trainer = build_trainer(config(tiny_model_dir))
    episode = hand_episode(tokenizer)
    assert pick_signal_episode([episode]) == 0
    found = signal_map(trainer.engine, trainer.pad([episode]), 1.0)
    arrays = training_arrays([episode], trainer.pad_id)
    with torch.no_grad():
        logprobs = token_logprobs(trainer.engine.model, torch.from_numpy(arrays.input_ids), 1.0)
    reset_row = 2  # first rollout of the reset group: prefix thought masked, one sampled
    mask = torch.from_numpy(arrays.loss_mask[reset_row])
    tokens = int(mask.sum())
    advantage = abs(float(arrays.advantages[reset_row]))
    expected = (advantage / tokens) * (1 - logprobs[reset_row][mask].exp()).mean()
    thoughts = found["rollouts"][reset_row]["thoughts"]
    assert [t["masked"] for t in thoughts] == [True, False]
    assert thoughts[0]["signal"] is None
    assert thoughts[1]["signal"] == pytest.approx(float(expected), rel=1e-5)
    base = found["rollouts"][0]["thoughts"]
    assert [t["masked"] for t in base] == [False, False]


@pytest.mark.parametrize("rows_per_pass", [1, 3])
def test_signal_map_scores_a_few_rollouts_a_pass_without_gradient(
    tiny_model_dir, tokenizer, rows_per_pass
):
    trainer = build_trainer(config(tiny_model_dir))
    batch = trainer.pad([hand_episode(tokenizer)])
    passes = []
    module = trainer.engine.model
    hook = module.register_forward_hook(
        lambda _m, _a, out: passes.append((out.logits.shape[0], torch.is_grad_enabled()))
    )
    try:
        found = signal_map(trainer.engine, batch, 1.0, rows_per_pass)
    finally:
        hook.remove()
    whole = signal_map(trainer.engine, batch, 1.0, rows_per_pass=4)
    assert [rows for rows, _ in passes] == [rows_per_pass] * (4 // rows_per_pass) + (
        [4 % rows_per_pass] if 4 % rows_per_pass else []
    )
    assert not any(grad for _, grad in passes)
    for got, want in zip(found["rollouts"], whole["rollouts"], strict=True):
        for a, b in zip(got["thoughts"], want["thoughts"], strict=True):
            assert a["masked"] == b["masked"]
            if b["signal"] is None:
                assert a["signal"] is None
            else:
                assert a["signal"] == pytest.approx(b["signal"], rel=1e-5, abs=1e-9)


def test_an_episode_without_gradient_in_both_groups_is_not_mapped(tokenizer):
    episode = hand_episode(tokenizer)
    base, reset = episode.groups
    flat = type(reset)("reset", reset.trajectories, (0.0, 0.0), reset_index=2)
    assert pick_signal_episode([type(episode)(episode.problem_id, (base, flat))]) is None


def test_stop_interrupts_a_batch_being_collected():
    stop = threading.Event()
    assembler = BatchAssembler(queue.Queue(), size=2, stop=stop)
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(StopRequested, match="^stopped with 0 of 2 episodes$"):
        assembler.next_batch(version=0)


def test_a_stopped_learner_checkpoints_and_logs_what_it_trained_on(
    tiny_model_dir, tokenizer, tmp_path
):
    source: queue.Queue = queue.Queue()
    for i in range(6):
        source.put(("actor-0", hand_episode(tokenizer, f"train/{i}")))
    settings = config(tiny_model_dir, tmp_path, checkpoint_every=10, signal_map_every=1)
    loop = LearnerLoop(settings, build_trainer(settings), source=_Source(source))
    threading.Timer(3.0, loop.stop.set).start()
    try:
        loop.run()  # three steps of two episodes, then it waits until stopped
    finally:
        loop.close()
    assert loop.step == 3
    assert latest_checkpoint(tmp_path).name == "step-00000003"
    lines = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 1, 2, 2, 3, 3]
    maps = [json.loads(line) for line in (tmp_path / "signal_maps.jsonl").read_text().splitlines()]
    assert [m["step"] for m in maps] == [1, 2, 3]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(m["learner/episodes/actor-0"] == 2 and m["perf/rollouts"] == 8 for m in metrics)


class _Source:
    """A queue of ``(actor, episode)`` as an episode source."""

    def __init__(self, items: queue.Queue) -> None:
        self.items = items

    def get(self, timeout=None):
        return self.items.get(timeout=timeout)
