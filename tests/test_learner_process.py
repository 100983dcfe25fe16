"""The learner process over real loopback sockets: notices, the CLI, SIGKILL and resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from test_learner import config, hand_episode

from thoughtmdp.cli import main
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.learners import LearnerLoop, build_trainer
from thoughtmdp.learners.checkpoint import latest_checkpoint, save_checkpoint
from thoughtmdp.learners.metrics_log import read_metrics
from thoughtmdp.learners.publish import sha256_of
from thoughtmdp.transport import EpisodeSender


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class Feeder:
    """An actor on its own thread that sends episodes until told to stop."""

    def __init__(self, address, episodes, limit=None):
        self.address, self.episodes, self.limit = address, episodes, limit
        self.stop = threading.Event()
        self.notices = []
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self):
        async with EpisodeSender(self.address, "actor-0", hello_interval=0.3) as sender:
            while not self.stop.is_set():
                if self.limit is not None and sender.sent >= self.limit:
                    await asyncio.sleep(0.05)
                else:
                    episode = self.episodes[sender.sent % len(self.episodes)]
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(sender.send(episode), 0.5)
                while not sender.notices.empty():
                    self.notices.append(sender.notices.get_nowait())

    def close(self):
        self.stop.set()
        self.thread.join(timeout=10)


def test_learner_updates_and_publishes_a_notice_the_actor_receives(
    tiny_model_dir, tokenizer, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    address = free_address()
    settings = config(tiny_model_dir, tmp_path, bind=address, max_steps=2, checkpoint_every=0)
    loop = LearnerLoop(settings, build_trainer(settings))
    episodes = [hand_episode(tokenizer, f"train/{i}") for i in range(4)]
    feeder = Feeder(address, episodes, limit=4)
    try:
        loop.run()
        deadline = time.monotonic() + 10
        while len(feeder.notices) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        feeder.close()
        loop.close()
    assert [n.version for n in feeder.notices] == [1, 2]
    latest = feeder.notices[-1]
    assert latest.sha256 == sha256_of(Path(latest.path) / "adapter_model.safetensors")
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), latest.path
    )
    trained = dict(loop.trainer.engine.adapter_state())
    loaded = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert loaded.keys() == trained.keys()
    assert all(torch.equal(loaded[n].detach(), trained[n]) for n in trained)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2]
    expected = {"actor/pg_loss", "actor/grad_norm", "perf/throughput", "timing_s/step"}
    assert expected <= records[0].keys()
    assert records[-1]["learner/version"] == 2


def test_cli_reports_a_bad_setting_before_loading_anything(capsys):
    assert main(["learner", "model=/m", "optim.rl=0.1"]) == 2
    message = "thoughtmdp learner: unknown key 'optim.rl'. Did you mean 'optim.lr'?\n"
    assert capsys.readouterr().err == message
    assert main(["learner"]) == 2
    assert re.search("set the path of the base model", capsys.readouterr().err)


def test_a_new_run_refuses_a_folder_with_checkpoints(tiny_model_dir, tmp_path):
    settings = config(tiny_model_dir, tmp_path)
    trainer = build_trainer(settings)
    save_checkpoint(tmp_path, 3, trainer.engine, {"step": 3}, keep=1)
    message = (
        f"{tmp_path} holds checkpoints (latest step-00000003); pass --resume to continue that "
        "run or choose another run_dir"
    )
    with pytest.raises(ThoughtMDPError, match=f"^{re.escape(message)}$"):
        LearnerLoop(settings, trainer, source=queue.Queue())
    assert not (tmp_path / "config.json").exists()


def start_learner(address, model_dir, run_dir, *extra):
    command = [
        sys.executable, "-m", "thoughtmdp.cli", "learner", "--bind", address,
        f"model={model_dir}", f"run_dir={run_dir}", "prompts_per_step=2",
        "prompts_per_minibatch=1", "checkpoint_every=2", "keep_checkpoints=3", "max_steps=12",
        "lora.rank=4", "lora.alpha=8", "optim.lr=0.01", *extra,
    ]  # fmt: skip
    log = open(run_dir.parent / f"learner-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())


def wait_for_step(run_dir, step, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["step"] >= step for r in read_metrics(run_dir)):
            return
        assert process.poll() is None, "the learner exited early"
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout}s")


def test_sigkill_then_resume_continues_without_repeating_steps(tiny_model_dir, tokenizer, tmp_path):
    address, run_dir = free_address(), tmp_path / "run"
    feeder = Feeder(address, [hand_episode(tokenizer, f"train/{i}") for i in range(6)])
    try:
        first = start_learner(address, tiny_model_dir, run_dir)
        wait_for_step(run_dir, 5, first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        killed_at = max(r["step"] for r in read_metrics(run_dir))
        checkpoint = latest_checkpoint(run_dir)
        resumed_from = json.loads((checkpoint / "state.json").read_text())
        versions_before = [r["learner/version"] for r in read_metrics(run_dir)]
        assert resumed_from["consumed"]["actor-0"] >= 2 * resumed_from["step"]  # stream position
        second = start_learner(address, tiny_model_dir, run_dir, "--resume")
        assert second.wait(timeout=180) == 0
    finally:
        feeder.close()
    records = read_metrics(run_dir)
    steps = [r["step"] for r in records]
    after = steps[len(versions_before) :]
    assert steps[: len(versions_before)] == list(range(1, killed_at + 1))
    assert after == list(range(resumed_from["step"] + 1, 13))  # resumed at the checkpoint
    versions = [r["learner/version"] for r in records[len(versions_before) :]]
    assert min(versions) > max(versions_before)  # versions never repeat across the crash
    assert versions == sorted(versions)
    final = latest_checkpoint(run_dir)
    assert final.name == "step-00000012"
    assert json.loads((final / "state.json").read_text())["step"] == 12
    assert not list((run_dir / "checkpoints").glob(".*")) and not list(
        (run_dir / "adapters").glob(".*")
    )
    optimizer = torch.load(final / "optimizer.pt", weights_only=True)
    # 12 steps of two mini-batches: 24 AdamW steps, none repeated, none lost
    assert {int(s["step"]) for s in optimizer["state"].values()} == {24}
    for folder in (run_dir / "adapters").iterdir():
        assert sorted(p.name for p in folder.iterdir()) == [
            "adapter_config.json",
            "adapter_model.safetensors",
        ]
