"""The actor as a real process: episodes arrive, adapters are followed, a killed actor rejoins."""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thoughtmdp.cli import main
from thoughtmdp.transport import EpisodeReceiver
from thoughtmdp.wire import AdapterNotice

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def adapter_notice(tiny_model_dir, tmp_path_factory) -> AdapterNotice:
    """Version 1: a real LoRA adapter of the tiny model, sent inline."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("adapter")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    get_peft_model(model, lora).save_pretrained(folder)
    files = tuple((p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file())
    weights = (folder / "adapter_model.safetensors").read_bytes()
    return AdapterNotice(1, hashlib.sha256(weights).hexdigest(), None, files)


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def start_actor(address: str, model_dir: Path, logs: Path, name: str, *extra: str):
    command = [
        sys.executable, "-m", "thoughtmdp.cli", "actor", "--learner", address,
        f"model={model_dir}", "backend=transformers", f"name={name}", "episode.presets=[grpo]",
        "episode.base_group_size=4", "max_thoughts=2", "sampling.max_tokens=8",
        "in_flight=2", "max_lag=0", "hello_interval=0.3", f"adapter_root={logs / name}",
        "task_options={num_steps: 2, seed: 0, size: 40}", *extra,
    ]  # fmt: skip
    log = open(logs / f"{name}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())


def take(receiver: EpisodeReceiver, got: list, until, timeout: float = 60) -> None:
    """Take episodes into ``got`` until ``until(got)`` holds."""
    deadline = time.monotonic() + timeout
    while not until(got):
        assert time.monotonic() < deadline, f"only {len(got)} episodes within {timeout}s"
        try:
            got.append(receiver.get(timeout=0.5))
        except queue.Empty:
            continue


def from_actor(got: list, name: str) -> list:
    return [episode for actor, episode in got if actor == name]


def test_cli_reports_a_bad_setting_before_loading_anything(capsys):
    assert main(["actor", "model=/m", "sampling.temprature=1"]) == 2
    message = "thoughtmdp actor: unknown key 'sampling.temprature'. Did you mean "
    assert capsys.readouterr().err == message + "'sampling.temperature'?\n"
    assert main(["actor", "model=/m", "shard=2", "num_shards=2"]) == 2
    assert capsys.readouterr().err == "thoughtmdp actor: shard: expected 0..1, got 2\n"


def test_actor_process_sends_every_episode_and_follows_the_adapter(
    tiny_model_dir, adapter_notice, tmp_path
):
    address, total = free_address(), 6
    got: list = []
    with EpisodeReceiver(address, window=2) as receiver:
        actor = start_actor(address, tiny_model_dir, tmp_path, "actor-0", f"max_episodes={total}")
        try:
            take(receiver, got, lambda g: len(g) >= 2)
            receiver.publish(adapter_notice)
            take(receiver, got, lambda g: len(g) >= total)
            assert actor.wait(timeout=60) == 0
        finally:
            actor.kill()
        time.sleep(0.2)
        assert receiver.qsize() == 0
        assert receiver.stats.received == {"actor-0": total}
    versions = [episode.policy_versions for _, episode in got]
    assert versions[:2] == [(0,), (0,)]
    assert set(versions) <= {(0,), (0, 1), (1,)}
    assert versions[-1] == (1,)  # max_lag=0: episodes started after the notice use v1


def test_a_killed_actor_rejoins_while_the_other_keeps_delivering(
    tiny_model_dir, adapter_notice, tmp_path
):
    address = free_address()
    got: list = []
    with EpisodeReceiver(address, window=2) as receiver:
        a = start_actor(address, tiny_model_dir, tmp_path, "actor-a", "shard=0", "num_shards=2")
        b = start_actor(address, tiny_model_dir, tmp_path, "actor-b", "shard=1", "num_shards=2")
        restarted = None
        try:
            take(receiver, got, lambda g: from_actor(g, "actor-a") and from_actor(g, "actor-b"))
            a.send_signal(signal.SIGKILL)
            a.wait(timeout=30)
            before = len(from_actor(got, "actor-b"))
            take(receiver, got, lambda g: len(from_actor(g, "actor-b")) >= before + 2)
            receiver.publish(adapter_notice)
            mark = len(from_actor(got, "actor-a"))
            restarted = start_actor(
                address, tiny_model_dir, tmp_path, "actor-a", "shard=0", "num_shards=2"
            )
            take(
                receiver,
                got,
                lambda g: any(e.policy_versions == (1,) for e in from_actor(g, "actor-a")[mark:]),
                timeout=90,
            )
            assert b.poll() is None and restarted.poll() is None
        finally:
            for process in (a, b, restarted):
                if process is not None:
                    process.kill()
                    process.wait(timeout=30)
    shards = {actor: {int(e.problem_id.split("/")[1]) % 2 for e in from_actor(got, actor)}
              for actor in ("actor-a", "actor-b")}  # fmt: skip
    assert shards == {"actor-a": {0}, "actor-b": {1}}
    rejoined = from_actor(got, "actor-a")[mark:]
    assert {e.policy_versions for e in rejoined} <= {(0,), (0, 1), (1,)}
