"""The wire format: exact round trips, and every malformed message is a WireError."""

from __future__ import annotations

import asyncio
import pickle
import re

import msgpack
import numpy as np
import pytest
from scripted_arith import NoisySolver, make_env_factory

from thoughtmdp import PrefixState, Thought, Trajectory
from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.episodes.builder import EpisodeBuilder
from thoughtmdp.episodes.presets import episode_config
from thoughtmdp.types import Episode, Group
from thoughtmdp.wire import (
    AdapterNotice,
    Credit,
    Hello,
    WireError,
    decode,
    encode_adapter,
    encode_credit,
    encode_episode,
    encode_hello,
)


class Lp(ScriptedBackend):
    """Scripted thoughts with awkward float log-probs, to check bit-exactness."""

    async def sample_thought(self, state_ids, sampling):
        thought = await super().sample_thought(state_ids, sampling)
        rng = np.random.default_rng(sampling.seed)
        lps = tuple(float(x) for x in -rng.exponential(size=len(thought.token_ids)) / 3)
        return Thought(thought.text, thought.token_ids, lps, 7)


@pytest.fixture(scope="module")
def episodes(tokenizer):
    task = ArithChainTask(num_steps=3, seed=0, size=50, test_size=10)
    builder = EpisodeBuilder(
        task,
        Lp(tokenizer, NoisySolver(task, 0.4)),
        make_env_factory(task, tokenizer),
        episode_config("2x4", "oracle"),
    )
    return [asyncio.run(builder.build(f"train/{i}", seed=i)) for i in range(8)]


def frames_bytes(frames):
    return [bytes(f) for f in frames]


def test_episode_round_trip_is_exact(episodes):
    for episode in episodes:
        back = decode(frames_bytes(encode_episode(episode, actor="a1")))
        assert back == episode
        for ours, theirs in zip(back.trajectories, episode.trajectories, strict=True):
            for a, b in zip(ours.all_thoughts, theirs.all_thoughts, strict=True):
                assert a.logprobs == b.logprobs  # float64 bit-exact
    assert any(e.resets for e in episodes)


def test_reset_prefix_thoughts_stay_shared(episodes):
    episode = next(e for e in episodes if any(g.kind == "reset" for g in e.groups))
    back = decode(encode_episode(episode))
    record = back.resets[0]
    reset = next(g for g in back.groups if g.kind == "reset")
    for trajectory in reset.trajectories:
        for mine, seeds in zip(
            trajectory.start.thoughts, record.seed_trajectory.all_thoughts, strict=False
        ):
            assert mine is seeds


@pytest.mark.parametrize(
    "episode",
    [
        Episode("empty", ()),
        Episode(
            "no-ids",
            (Group("base", (Trajectory(PrefixState("no-ids"), (Thought("t"),), 0.5),), (0.0,)),),
        ),
        Episode(
            "info",
            (
                Group(
                    "base",
                    (
                        Trajectory(
                            PrefixState("info", (1,)),
                            (Thought("é", (2**31 - 1,)),),
                            1.0,
                            True,
                            False,
                            {"np": np.float32(0.5), "t": (1, 2)},
                        ),
                    ),
                    (1.5,),
                ),
            ),
            fell_back=True,
            timings={"total_s": 0.25},
        ),
    ],
)
def test_edge_case_episodes(episode):
    back = decode(encode_episode(episode))
    assert back.problem_id == episode.problem_id
    assert [g.rewards for g in back.groups] == [g.rewards for g in episode.groups]
    if episode.problem_id == "info":
        assert back.trajectories[0].info == {"np": 0.5, "t": [1, 2]}
        assert back.fell_back
        assert back.timings == {"total_s": 0.25}


def test_values_that_cannot_travel_are_refused():
    bad = Trajectory(PrefixState("p", (1,)), (Thought("x", (1,)),), 1.0, info={"obj": object()})
    with pytest.raises(WireError, match="^message holds a value that cannot be sent"):
        encode_episode(Episode("p", (Group("base", (bad,), (0.0,)),)))
    big = Trajectory(PrefixState("p", (2**31,)), (), 1.0)
    with pytest.raises(WireError, match="^token ids must fit in int32$"):
        encode_episode(Episode("p", (Group("base", (big,), (0.0,)),)))


def test_control_messages_round_trip():
    notice = AdapterNotice(
        3,
        "ab" * 32,
        None,
        (("adapter_config.json", b"{}"), ("adapter_model.safetensors", b"\x00" * 10)),
    )
    assert decode(encode_adapter(notice)) == notice
    assert decode(encode_hello(Hello("actor-0", 12))) == Hello("actor-0", 12)
    assert decode(encode_credit(Credit(4))) == Credit(4)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([], "empty message"),
        ([b"\x09", b""], "unknown message kind b'\\t'"),
        ([b"\x03"], "credit message has no header frame"),
        ([b"\x03", b"\xc1"], "header is not valid msgpack"),
        ([b"\x03", msgpack.packb([1, 2])], "header must be a map, got list"),
        (
            [b"\x03", msgpack.packb({"schema": 99, "limit": 1})],
            "schema version 99 is not supported (expected 1)",
        ),
        (
            [b"\x03", msgpack.packb({"schema": 1, "limit": "1"})],
            "header: field 'limit' must be int, got str",
        ),
        (
            [b"\x03", msgpack.packb({"schema": 1, "limit": True})],
            "header: field 'limit' must be int, got bool",
        ),
        ([b"\x03", msgpack.packb({"schema": 1})], "header: missing field 'limit'"),
        (
            [b"\x03", msgpack.packb({"schema": 1, "limit": 1}), b"x"],
            "credit message has 1 unexpected array frame(s)",
        ),
        (
            [b"\x04", msgpack.packb({"schema": 1, "actor": msgpack.ExtType(1, b"x")})],
            "msgpack extension type 1 is not allowed",
        ),
        ([b"\x04", pickle.dumps({"schema": 1, "actor": "x"})], "header is not valid msgpack"),
    ],
)
def test_malformed_messages(frames, message):
    with pytest.raises(WireError, match=f"^{re.escape(message)}"):
        decode(frames)


def test_oversized_and_truncated_episodes(episodes):
    frames = frames_bytes(encode_episode(episodes[0]))
    with pytest.raises(WireError, match="exceeds the limit of 100$"):
        decode(frames, max_bytes=100)
    with pytest.raises(WireError, match="^token ids frame holds"):
        decode([frames[0], frames[1], frames[2][:-4], frames[3]])
    with pytest.raises(
        WireError, match=r"^episode needs 2 array frames \(token ids, log-probs\), got 1$"
    ):
        decode(frames[:3])


def test_ten_thousand_mutated_messages_only_raise_wire_errors(episodes):
    rng = np.random.default_rng(0)
    originals = [frames_bytes(encode_episode(e)) for e in episodes[:3]]
    originals += [frames_bytes(encode_credit(Credit(2))), frames_bytes(encode_hello(Hello("a")))]
    outcomes = {"ok": 0, "rejected": 0}
    for _ in range(10_000):
        frames = [bytearray(f) for f in originals[rng.integers(len(originals))]]
        mutate(frames, rng)
        try:
            decode([bytes(f) for f in frames])
            outcomes["ok"] += 1
        except WireError:
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 5_000
    assert sum(outcomes.values()) == 10_000


def mutate(frames, rng):
    """Flip bytes, truncate, drop, duplicate or replace frames with random bytes."""
    choice = rng.integers(5)
    target = frames[rng.integers(len(frames))]
    if choice == 0 and target:
        for _ in range(rng.integers(1, 4)):
            target[rng.integers(len(target))] = rng.integers(256)
    elif choice == 1:
        del target[rng.integers(len(target) + 1) :]
    elif choice == 2 and len(frames) > 1:
        del frames[rng.integers(len(frames))]
    elif choice == 3:
        frames.append(bytearray(frames[rng.integers(len(frames))]))
    else:
        frames[rng.integers(len(frames))] = bytearray(rng.bytes(rng.integers(0, 64)))
