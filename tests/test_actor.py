"""The actor loop over real sockets: every episode arrives, staleness and adapters respected.

Also: an episode keeps the adapter version it started with, and the paper configs run
synchronously and on-policy.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import itertools
import logging
import queue

import pytest
from scripted_arith import NoisySolver, make_env_factory

from thoughtmdp.agents.actor import Actor, shard_order
from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.commands.config import load_config
from thoughtmdp.envs.arith_chain import ArithChainTask
from thoughtmdp.episodes.builder import EpisodeBuilder
from thoughtmdp.episodes.presets import episode_config
from thoughtmdp.settings.actor import ActorConfig
from thoughtmdp.settings.files import shipped_configs
from thoughtmdp.transport import EpisodeReceiver, EpisodeSender
from thoughtmdp.wire import AdapterNotice

TASK = ArithChainTask(num_steps=2, seed=0, size=40, test_size=5)


def notice(version: int, weights: bytes = b"weights", sha: str | None = None) -> AdapterNotice:
    files = (("adapter_config.json", b"{}"), ("adapter_model.safetensors", weights))
    return AdapterNotice(version, sha or hashlib.sha256(weights).hexdigest(), None, files)


def run_actor(
    tokenizer, tmp_path, receiver, episodes, max_lag=1, before=None, barrier=False, collect=None
):
    backend = ScriptedBackend(tokenizer, NoisySolver(TASK, 0.3))
    builder = EpisodeBuilder(
        TASK, backend, make_env_factory(TASK, tokenizer), episode_config("rrpo")
    )

    async def main():
        async with EpisodeSender(receiver.address, "actor-7", hello_interval=0.3) as sender:
            if before is not None:
                await before(sender)
            actor = Actor(
                builder,
                sender,
                shard_order(TASK.problems("train"), 1, 2, seed=0),
                in_flight=4,
                max_lag=max_lag,
                adapter_root=tmp_path,
                batch_barrier=barrier,
            )

            def collect_all():
                return [receiver.get(timeout=20) for _ in range(episodes)]

            _, got = await asyncio.gather(
                actor.run(max_episodes=episodes), asyncio.to_thread(collect or collect_all)
            )
            return actor, got

    actor, got = asyncio.run(main())
    return backend, actor, got


def test_every_episode_arrives(tokenizer, tmp_path):
    with EpisodeReceiver(window=3) as receiver:
        backend, actor, got = run_actor(tokenizer, tmp_path, receiver, episodes=12)
    assert actor.sent == 12
    assert len(got) == 12
    assert {a for a, _ in got} == {"actor-7"}
    ids = [e.problem_id for _, e in got]
    assert all(int(i.split("/")[1]) % 2 == 1 for i in ids)  # shard 1 of 2
    assert all(e.policy_versions in ((), (0,)) for _, e in got)


def test_stale_actor_waits_for_the_adapter_then_samples_with_it(tokenizer, tmp_path):
    async def publish_first(sender):
        while sender.latest is None:  # v2 arrives in reply to the hello
            await asyncio.sleep(0.01)
        assert sender.latest.version == 2

    with EpisodeReceiver() as receiver:
        receiver.publish(notice(2))
        backend, actor, got = run_actor(
            tokenizer, tmp_path, receiver, 6, max_lag=0, before=publish_first
        )
    assert backend.policy_version == 2
    assert len(backend.loaded) == 1
    assert all(e.policy_versions == (2,) for _, e in got)


def test_with_a_batch_barrier_each_batch_waits_for_a_newer_adapter(tokenizer, tmp_path):
    with EpisodeReceiver(window=8) as receiver:

        def learner():
            first = [receiver.get(timeout=20) for _ in range(4)]
            with pytest.raises(queue.Empty):
                receiver.get(timeout=1.0)  # nothing more until a new version is out
            receiver.publish(notice(1))
            return first + [receiver.get(timeout=20) for _ in range(4)]

        backend, actor, got = run_actor(
            tokenizer, tmp_path, receiver, 8, max_lag=0, barrier=True, collect=learner
        )
    assert all(e.policy_versions in ((), (0,)) for _, e in got[:4])
    assert all(e.policy_versions == (1,) for _, e in got[4:])
    assert actor.sent == 8


@pytest.mark.parametrize("pin", [True, False])
def test_an_episode_keeps_the_version_it_started_with_while_adapters_arrive(
    tokenizer, tmp_path, pin
):
    backend = ScriptedBackend(tokenizer, NoisySolver(TASK, 1.0))  # every seed chain fails
    builder = EpisodeBuilder(
        TASK, backend, make_env_factory(TASK, tokenizer), episode_config("rrpo")
    )
    scripted, requests = backend.sample_thought, itertools.count()

    with EpisodeReceiver() as receiver:

        async def sample_thought(state_ids, sampling):
            if next(requests) == 2:  # the first episode's third request waits for v1
                receiver.publish(notice(1))
                while backend.policy_version < 1:
                    await asyncio.sleep(0.01)
            return await scripted(state_ids, sampling)

        backend.sample_thought = sample_thought

        async def main():
            async with EpisodeSender(receiver.address, "actor-7", hello_interval=0.3) as sender:
                order = shard_order(TASK.problems("train"), 0, 1, seed=0)
                actor = Actor(
                    builder, sender, order, in_flight=1, adapter_root=tmp_path, pin_version=pin
                )
                await actor.run(max_episodes=2)
                return [receiver.get(timeout=20)[1] for _ in range(2)]

        first, second = asyncio.run(main())
    thoughts = len([t for r in first.trajectories for t in r.thoughts])
    assert first.groups[-1].kind == "reset" and thoughts > 8  # most came after the load
    assert first.policy_versions == ((0,) if pin else (0, 1))
    assert second.policy_versions == (1,)
    assert backend.pins == {}


PAPER_RUNS = [n for n in shipped_configs() if n.startswith("paper/") and n != "paper/table5"]


@pytest.mark.parametrize("name", PAPER_RUNS)
def test_paper_configs_are_synchronous_and_on_policy(name):
    config = load_config("train", name, [])  # the settings; the data files are not here
    actor, learner = config.actor, config.learner
    assert actor.batch_barrier and actor.pin_version and actor.max_lag == 0
    assert config.actors * actor.in_flight == learner.prompts_per_step == 32
    assert learner.max_lag == 0 and learner.stale == "skip"
    assert (learner.loss.clip_eps, learner.loss.is_cap) == (None, None)  # as in the paper


def test_episodes_are_pinned_by_default():
    assert ActorConfig().pin_version
    assert inspect.signature(Actor).parameters["pin_version"].default is True


def test_a_corrupt_adapter_is_refused_and_the_old_one_kept(tokenizer, tmp_path, caplog):
    with EpisodeReceiver() as receiver, caplog.at_level(logging.ERROR):
        receiver.publish(notice(1, sha="0" * 64))
        backend, actor, got = run_actor(tokenizer, tmp_path, receiver, 4, max_lag=1)
    assert backend.policy_version == 0
    assert backend.loaded == []
    assert "sha256 of" in caplog.text
    assert len(got) == 4


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("scripted", "ScriptedBackend"),
        ("transformers", "TransformersBackend"),
        ("vllm", "VLLMBackend"),
    ],
)
def test_every_backend_loads_adapters_with_a_coroutine(module, name):
    backend = getattr(importlib.import_module(f"thoughtmdp.agents.backends.{module}"), name)
    assert inspect.iscoroutinefunction(backend.load_adapter)


def test_shard_order_validates():
    with pytest.raises(ValueError, match="shard must be in 0..1, got 2"):
        next(shard_order(TASK.problems("train"), 2, 2, 0))
