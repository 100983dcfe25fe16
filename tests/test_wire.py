"""The wire format: exact round trips, and every malformed message is a WireError."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
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
    Chunk,
    ChunkRequest,
    Credit,
    Hello,
    WireError,
    decode,
    encode_adapter,
    encode_chunk,
    encode_chunk_request,
    encode_credit,
    encode_episode,
    encode_hello,
)
from thoughtmdp.wire.rows import GroupRow, ResetRow, ThoughtRow, TrajectoryRow


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
    pulled = AdapterNotice(4, "cd" * 32, sizes=(("adapter_model.safetensors", 2**40),))
    assert decode(encode_adapter(pulled)) == pulled
    assert decode(encode_hello(Hello("actor-0", 12))) == Hello("actor-0", 12)
    assert decode(encode_credit(Credit(4))) == Credit(4)
    request = ChunkRequest(4, "adapter_model.safetensors", 2**33, 2**23)
    assert decode(encode_chunk_request(request)) == request
    chunk = Chunk(4, "adapter_model.safetensors", 2**33, b"\x00\xff" * 5)
    assert decode(encode_chunk(chunk)) == chunk
    refusal = Chunk(5, "x", 0, error="adapter v5 is not served (served: [4])")
    assert decode(encode_chunk(refusal)) == refusal


def adapter_header(**fields):
    return msgpack.packb({"schema": 1, "version": 1, "sha256": "", "path": None, **fields})


def chunk_request(**fields):
    header = {"schema": 1, "version": 1, "name": "w", "offset": 0, "length": 8, **fields}
    return [b"\x05", msgpack.packb(header)]


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
        (
            [b"\x02", adapter_header(files=[], sizes=[["w", -1]])],
            "header: field 'sizes' must be a list of [name, size >= 0]",
        ),
        (
            [b"\x02", adapter_header(files=[], sizes=[["w", True]])],
            "header: field 'sizes' must be a list of [name, size >= 0]",
        ),
        (chunk_request(offset=-1), "header: field 'offset' must be >= 0, got -1"),
        (chunk_request(length=0), "header: field 'length' must be > 0, got 0"),
        ([*chunk_request(), b"x"], "chunk request message has 1 unexpected array frame(s)"),
        (
            [b"\x06", msgpack.packb({"schema": 1, "version": 1, "name": "w", "offset": 0})],
            "chunk message carries 0 data frames, expected 1",
        ),
        (
            [b"\x06", msgpack.packb({"schema": 1, "version": 1, "name": "w", "offset": 0}), b""],
            "header: missing field 'error'",
        ),
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


def episode_with_resets_header(episodes):
    """The frames of an episode with a reset, and its header as plain data to tamper with."""
    frames = frames_bytes(encode_episode(next(e for e in episodes if e.resets)))
    return frames, msgpack.unpackb(frames[1])


@pytest.mark.parametrize(
    ("table", "tamper", "message"),
    [
        (
            "thoughts",
            lambda row: row.__setitem__(3, "7"),
            "thoughts[0]: field 'policy_version' must be int or None, got str",
        ),
        (
            "thoughts",
            lambda row: row.__setitem__(1, [0]),
            "thoughts[0]: field 'span' must be [offset, length], got [0]",
        ),
        (
            "trajectories",
            lambda row: row.__delitem__(slice(6, None)),
            "trajectories[0]: missing field 'truncated'",
        ),
        (
            "trajectories",
            lambda row: row.__setitem__(3, [10**6]),
            "trajectories[0]: field 'thoughts' refers outside the table of",
        ),
        (
            "groups",
            lambda row: row.__setitem__(0, "odd"),
            "groups[0]: field 'kind' must be one of 'base', 'reset', got 'odd'",
        ),
        (
            "groups",
            lambda row: row.__setitem__(2, []),
            "groups[0]: field 'advantages' needs one number per trajectory",
        ),
        (
            "resets",
            lambda row: row.__setitem__(4, "maybe"),
            "resets[0]: field 'parse_status' must be one of 'ok', 'unparsable', "
            "'out_of_range', 'ambiguous', 'not_applicable', got 'maybe'",
        ),
        (
            "resets",
            lambda row: row.__setitem__(7, True),
            "resets[0]: field 'seconds' must be int or float, got bool",
        ),
    ],
)
def test_malformed_rows_name_their_field(episodes, table, tamper, message):
    frames, header = episode_with_resets_header(episodes)
    tamper(header[table][0])
    with pytest.raises(WireError, match=f"^{re.escape(message)}"):
        decode([frames[0], msgpack.packb(header), *frames[2:]])


@pytest.mark.parametrize("counts", [[3, -1], [2.5], "3", [True]])
def test_unused_token_counts_must_be_counts(episodes, counts):
    frames, header = episode_with_resets_header(episodes)
    header["unused_tokens"] = counts
    message = "header: field 'unused_tokens' must be a list of counts >= 0, got "
    with pytest.raises(WireError, match=f"^{re.escape(message)}"):
        decode([frames[0], msgpack.packb(header), *frames[2:]])


def test_unused_token_counts_travel_and_older_actors_send_none(episodes):
    episode = next(e for e in episodes if e.resets)
    counted = dataclasses.replace(episode, unused_tokens=(7, 9))
    assert decode(encode_episode(counted)).unused_tokens == (7, 9)
    frames, header = episode_with_resets_header(episodes)
    del header["unused_tokens"]
    assert decode([frames[0], msgpack.packb(header), *frames[2:]]).unused_tokens == ()


def test_a_row_that_is_not_a_list_is_refused(episodes):
    frames, header = episode_with_resets_header(episodes)
    header["groups"][0] = {"kind": "base"}
    with pytest.raises(WireError, match="^groups\\[0\\]: row must be a list, got dict$"):
        decode([frames[0], msgpack.packb(header), *frames[2:]])


def test_rows_may_carry_fields_appended_by_a_newer_writer(episodes):
    frames, header = episode_with_resets_header(episodes)
    for table in ("thoughts", "trajectories", "groups", "resets"):
        for row in header[table]:
            row.append("later")
    back = decode([frames[0], msgpack.packb(header), *frames[2:]])
    assert back == next(e for e in episodes if e.resets)


ROW_LAYOUTS = {
    "thoughts": ThoughtRow,
    "trajectories": TrajectoryRow,
    "groups": GroupRow,
    "resets": ResetRow,
}
HEADER_FIELDS = {
    *("problem_id", "fell_back", "unused_tokens", "timings", "sizes", *ROW_LAYOUTS),  # episode
    *("version", "sha256", "path", "files"),  # adapter notice
    *("actor", "sent", "limit"),  # hello, credit
    *("name", "offset", "length", "error"),  # chunk request, chunk
}
FRAMING_ERROR = re.compile(
    r"^(unknown message kind |[\w ]+ message has no header frame$|header is not valid msgpack: "
    r"|msgpack extension type -?\d+ is not allowed$|header must be a map, got \w+$"
    r"|schema version .* is not supported \(expected 1\)$"
    r"|[\w ]+ message has \d+ unexpected array frame\(s\)$"
    r"|chunk message carries \d+ data frames, expected 1$"
    r"|episode needs 2 array frames \(token ids, log-probs\), got \d+$"
    r"|(token ids|log-probs) frame holds \d+ bytes, header says .* values$"
    r"|header field 'sizes' must list 2 sizes$)"
)
FIELD_ERROR = re.compile(
    r"^(header|\w+)(?:\[\d+\])?: (?:row must be a list|(?:missing )?field '(\w+)')"
)


def rejection(message):
    """``"framing"``, or ``"field"`` for a message naming a field of its header or row."""
    if FRAMING_ERROR.match(message):
        return "framing"
    match = FIELD_ERROR.match(message)
    assert match, f"unexpected rejection: {message}"
    where, name = match.groups()
    fields = HEADER_FIELDS if where == "header" else ROW_LAYOUTS[where]._fields
    assert name is None or name in fields, f"{message!r} names no field of {where}"
    return "field"


def test_ten_thousand_mutated_messages_only_raise_wire_errors(episodes):
    rng = np.random.default_rng(0)
    originals = [frames_bytes(encode_episode(e)) for e in episodes[:3]]
    originals += [frames_bytes(encode_credit(Credit(2))), frames_bytes(encode_hello(Hello("a")))]
    types = {b"\x01": Episode, b"\x02": AdapterNotice, b"\x03": Credit, b"\x04": Hello}
    types |= {b"\x05": ChunkRequest, b"\x06": Chunk}
    outcomes = collections.Counter()
    for _ in range(10_000):
        frames = [bytearray(f) for f in originals[rng.integers(len(originals))]]
        mutation = mutate(frames, rng)
        try:
            message = decode([bytes(f) for f in frames])
        except WireError as exc:
            outcomes[mutation, rejection(str(exc))] += 1
        else:
            assert isinstance(message, types[bytes(frames[0])])
            outcomes[mutation, "ok"] += 1
    # a frame too many or too few never decodes; bytes changed inside an array frame always do
    assert outcomes["append", "ok"] == outcomes["drop", "ok"] == 0
    assert outcomes["append", "framing"] > 1_000 and outcomes["drop", "framing"] > 1_000
    assert outcomes["flip array", "framing"] == outcomes["flip array", "field"] == 0
    assert outcomes["flip array", "ok"] > 500
    assert sum(n for (_, result), n in outcomes.items() if result == "field") > 50
    assert sum(n for (_, result), n in outcomes.items() if result != "ok") > 5_000


def mutate(frames, rng):
    """Flip bytes, truncate, drop, duplicate or replace frames with random bytes; say which."""
    choice = rng.integers(5)
    position = rng.integers(len(frames))
    target = frames[position]
    if choice == 0 and target:
        for _ in range(rng.integers(1, 4)):
            target[rng.integers(len(target))] = rng.integers(256)
        return ("flip kind", "flip header", "flip array")[min(position, 2)]
    if choice == 1:
        del target[rng.integers(len(target) + 1) :]
        return "truncate"
    if choice == 2 and len(frames) > 1:
        del frames[rng.integers(len(frames))]
        return "drop"
    if choice == 3:
        frames.append(bytearray(frames[rng.integers(len(frames))]))
        return "append"
    frames[rng.integers(len(frames))] = bytearray(rng.bytes(rng.integers(0, 64)))
    return "replace"
