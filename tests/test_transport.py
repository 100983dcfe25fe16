"""ZeroMQ transport over real loopback sockets: delivery, flow control, notices, faults."""

from __future__ import annotations

import asyncio
import queue
import socket as pysocket

import numpy as np
import pytest
import zmq
import zmq.auth

from thoughtmdp import PrefixState, Thought, ThoughtMDPError, Trajectory
from thoughtmdp.transport import CurveClient, CurveServer, EpisodeReceiver, EpisodeSender
from thoughtmdp.types import Episode, Group
from thoughtmdp.wire import AdapterNotice


def episode(i: int) -> Episode:
    thoughts = (Thought(f"step {i}", (i, i + 1), (-0.5, -0.25), i % 3),)
    trajectory = Trajectory(PrefixState(f"train/{i}", (1, 2, 3)), thoughts, float(i % 2), True)
    return Episode(f"train/{i}", (Group("base", (trajectory,), (0.0,)),))


def drain(receiver: EpisodeReceiver, n: int, timeout: float = 10.0) -> list:
    return [receiver.get(timeout=timeout) for _ in range(n)]


def test_episodes_arrive_intact_and_in_order():
    async def main(receiver):
        async with EpisodeSender(receiver.address, "actor-0") as sender:
            receiving = asyncio.create_task(asyncio.to_thread(drain, receiver, 20))
            for i in range(20):  # more than the window: the learner must keep up
                await sender.send(episode(i))
            return await receiving

    with EpisodeReceiver(window=4) as receiver:
        got = asyncio.run(main(receiver))
    assert [actor for actor, _ in got] == ["actor-0"] * 20
    assert [e for _, e in got] == [episode(i) for i in range(20)]
    assert receiver.stats.received["actor-0"] == 20
    assert not receiver.stats.rejected


def test_slow_learner_makes_actors_wait_and_loses_nothing():
    async def main(receiver):
        async with EpisodeSender(receiver.address, "fast", hello_interval=0.2) as sender:
            sending = asyncio.gather(*(sender.send(episode(i)) for i in range(10)))
            await asyncio.sleep(1.0)  # the learner takes nothing meanwhile
            queued_while_stalled, sent_while_stalled = receiver.qsize(), sender.sent
            got = []
            for _ in range(10):
                got.append(await asyncio.to_thread(receiver.get, 10.0))
                assert receiver.qsize() <= 2
            await sending
            return queued_while_stalled, sent_while_stalled, got

    with EpisodeReceiver(window=2) as receiver:
        queued, sent, got = asyncio.run(main(receiver))
    assert (queued, sent) == (2, 2)  # bounded by the window, even with repeated hellos
    assert sorted(e.problem_id for _, e in got) == sorted(f"train/{i}" for i in range(10))


def test_late_joiner_gets_the_latest_adapter_and_new_ones():
    v3 = AdapterNotice(3, "c" * 64, "/runs/adapters/v3")
    v4 = AdapterNotice(4, "d" * 64, None, (("adapter_model.safetensors", b"\x01\x02"),))

    async def main(receiver):
        receiver.publish(AdapterNotice(2, "b" * 64, "/runs/adapters/v2"))
        receiver.publish(v3)
        async with EpisodeSender(receiver.address, "late") as sender:
            first = await asyncio.wait_for(sender.notices.get(), 5)
            receiver.publish(v4)
            second = await asyncio.wait_for(sender.notices.get(), 5)
            return first, second

    with EpisodeReceiver() as receiver:
        assert asyncio.run(main(receiver)) == (v3, v4)


def test_garbage_from_a_peer_is_counted_and_the_loop_survives():
    rng = np.random.default_rng(0)

    async def main(receiver):
        context = zmq.Context()
        raw = context.socket(zmq.DEALER)
        raw.connect(receiver.address)
        for _ in range(2000):
            frames = [rng.bytes(int(rng.integers(0, 40))) for _ in range(int(rng.integers(1, 4)))]
            frames[0] = (
                bytes([int(rng.integers(0, 6))]) + frames[0][:1]
                if rng.random() < 0.5
                else frames[0]
            )
            raw.send_multipart(frames)
        raw.close(linger=1000)
        context.term()
        async with EpisodeSender(receiver.address, "honest") as sender:
            await sender.send(episode(7))
            return await asyncio.to_thread(receiver.get, 10.0)

    with EpisodeReceiver() as receiver:
        actor, received = asyncio.run(main(receiver))
        deadline = 50
        while sum(receiver.stats.rejected.values()) < 2000 and deadline:
            asyncio.run(asyncio.sleep(0.1))
            deadline -= 1
        assert sum(receiver.stats.rejected.values()) == 2000
    assert (actor, received) == ("honest", episode(7))


def free_port() -> int:
    with pysocket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_actor_continues_after_the_learner_restarts():
    address = f"tcp://127.0.0.1:{free_port()}"

    async def main():
        first = EpisodeReceiver(address, window=2)
        async with EpisodeSender(address, "steady", hello_interval=0.2) as sender:
            await sender.send(episode(0))
            got = [await asyncio.to_thread(first.get, 10.0)]
            first.close()
            second = EpisodeReceiver(address, window=2)
            try:
                receiving = asyncio.create_task(asyncio.to_thread(drain, second, 3))
                for i in range(1, 4):
                    await sender.send(episode(i))
                got += await receiving
            finally:
                second.close()
            return got

    got = asyncio.run(main())
    assert [e.problem_id for _, e in got] == [f"train/{i}" for i in range(4)]


def test_curve_keys_required_when_configured(tmp_path):
    server_public, server_secret = zmq.auth.create_certificates(tmp_path, "learner")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    client_public, client_secret = zmq.auth.create_certificates(allowed, "actor")
    stranger_public, stranger_secret = zmq.auth.create_certificates(tmp_path, "stranger")

    async def main(receiver):
        keys = CurveClient(client_secret, server_public)
        async with EpisodeSender(receiver.address, "trusted", curve=keys) as sender:
            await sender.send(episode(1))
            got = await asyncio.to_thread(receiver.get, 10.0)
        intruder = EpisodeSender(
            receiver.address, "intruder", curve=CurveClient(stranger_secret, server_public)
        )
        async with intruder:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(intruder.send(episode(2)), 1.5)
        return got

    with EpisodeReceiver(curve=CurveServer(server_secret, allowed)) as receiver:
        actor, received = asyncio.run(main(receiver))
        with pytest.raises(queue.Empty):
            receiver.get(timeout=0.2)
    assert (actor, received) == ("trusted", episode(1))


def test_remote_bind_needs_consent():
    with pytest.raises(ThoughtMDPError, match="refusing to bind 'tcp://0.0.0.0:0'"):
        EpisodeReceiver("tcp://0.0.0.0:0")
    with EpisodeReceiver("tcp://0.0.0.0:0", allow_remote=True) as receiver:
        assert receiver.address.startswith("tcp://0.0.0.0:")


def test_bad_bind_address_is_reported():
    with pytest.raises(zmq.ZMQError):
        EpisodeReceiver("tcp://127.0.0.1:notaport")


def test_learner_and_actor_settings_carry_curve_keys(tmp_path):
    from thoughtmdp.errors import ConfigError
    from thoughtmdp.settings.actor import ActorConfig
    from thoughtmdp.settings.learner import LearnerConfig
    from thoughtmdp.settings.loader import load

    server_public, server_secret = zmq.auth.create_certificates(tmp_path, "learner")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    _, client_secret = zmq.auth.create_certificates(allowed, "actor")
    learner = load(
        LearnerConfig, None, [f"curve_secret={server_secret}", f"curve_authorized={allowed}"]
    )
    actor = load(
        ActorConfig,
        None,
        [f"curve_secret={client_secret}", f"curve_server_public={server_public}"],
    )

    async def main(receiver):
        async with EpisodeSender(receiver.address, "trusted", curve=actor.curve()) as sender:
            await sender.send(episode(3))
            return await asyncio.to_thread(receiver.get, 10.0)

    with EpisodeReceiver(curve=learner.curve()) as receiver:
        assert asyncio.run(main(receiver)) == ("trusted", episode(3))
    assert LearnerConfig().curve() is None and ActorConfig().curve() is None
    with pytest.raises(ConfigError, match="set both curve_secret and curve_authorized"):
        LearnerConfig(curve_secret=server_secret)
    with pytest.raises(ConfigError, match="set both curve_secret and curve_server_public"):
        ActorConfig(curve_server_public=server_public)
