"""DeepSpeed ZeRO-2/3 on CPU (gloo, two ranks) against a single process on the same batches.

The first DeepSpeed run on a machine JIT-compiles its shared-memory communication op
(about 90 s on two cores; cached in ~/.cache/torch_extensions afterwards).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_learner import hand_episode
from test_learner_process import Feeder, free_address

from thoughtmdp.learners.metrics_log import read_metrics

pytest.importorskip("deepspeed", reason='install with: pip install "thoughtmdp[deepspeed]"')
pytestmark = pytest.mark.slow

# Each rank: three steps, a checkpoint, a fresh engine restored from it, one more step on both.
WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from safetensors.torch import save_file
    from thoughtmdp.learners import build_trainer
    from thoughtmdp.learners.checkpoint import load_checkpoint, save_checkpoint
    from thoughtmdp.settings.learner import LearnerConfig
    from thoughtmdp.settings.convert import from_dict
    from test_deepspeed import batch

    config = from_dict(LearnerConfig, json.loads(sys.argv[1]))
    out = Path(sys.argv[2])
    trainer = build_trainer(config)
    losses = [trainer.step(trainer.pad(batch()))["actor/pg_loss"] for _ in range(3)]
    path = save_checkpoint(out, 3, trainer.engine, {"step": 3}, keep=1)
    resumed = build_trainer(config)
    load_checkpoint(path, resumed.engine)
    losses.append(trainer.step(trainer.pad(batch()))["actor/pg_loss"])
    resumed.step(resumed.pad(batch()))
    rank = trainer.engine.rank
    save_file(trainer.engine.adapter_state(), str(out / f"rank{rank}.safetensors"))
    save_file(resumed.engine.adapter_state(), str(out / f"resumed{rank}.safetensors"))
    (out / f"losses{rank}.json").write_text(json.dumps(losses))
    """
)


def batch():
    import numpy as np

    from thoughtmdp.learners.synthetic import random_episode

    rng = np.random.default_rng(0)
    return [random_episode(rng, f"p{i}", 400, prompt_tokens=16, thought_tokens=6) for i in range(4)]


def settings(model_dir, zero_stage=None, shared_prefix=False, kl_coef=0.0):
    return {
        "model": str(model_dir),
        "shared_prefix": shared_prefix,
        "lora": {"rank": 4, "alpha": 8},
        "optim": {"lr": 1e-3, "schedule": "linear", "warmup_steps": 1},  # the lr moves each step
        "max_steps": 4,
        "prompts_per_step": 4,
        "prompts_per_minibatch": 2,
        "rollouts_per_microbatch": 3,  # several micro-batches per rank and mini-batch
        "deepspeed": {"zero_stage": zero_stage},
        "loss": {"kl_coef": kl_coef},  # > 0: a reference pass with the adapter off, per rank
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank, port):
    env = os.environ.copy()
    env.update(
        DS_ACCELERATOR="cpu",
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",  # two ranks share two cores
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")]),
    )
    return env


def start_ranks(worker, arguments, tmp_path):
    """Two CPU ranks running ``worker`` (a ``python -c`` program), logging to ``rank{r}.log``."""
    port = free_port()
    return [
        subprocess.Popen(
            [sys.executable, "-c", worker, *arguments],
            env=rank_env(rank, port),
            stdout=open(tmp_path / f"rank{rank}.log", "w"),
            stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]


@pytest.mark.parametrize(
    ("zero_stage", "shared_prefix", "kl_coef"), [(2, False, 0.0), (3, True, 0.0), (3, True, 0.5)]
)
def test_two_cpu_ranks_match_one_process(
    tiny_model_dir, tmp_path, zero_stage, shared_prefix, kl_coef
):
    from thoughtmdp.learners import build_trainer
    from thoughtmdp.settings.convert import from_dict
    from thoughtmdp.settings.learner import LearnerConfig

    arguments = [
        json.dumps(settings(tiny_model_dir, zero_stage, shared_prefix, kl_coef)),
        str(tmp_path),
    ]
    ranks = start_ranks(WORKER, arguments, tmp_path)
    codes = [r.wait(timeout=500) for r in ranks]
    assert codes == [0, 0], (tmp_path / "rank0.log").read_text()[-3000:]
    naive = settings(tiny_model_dir, kl_coef=kl_coef)  # one process, the naive forward
    single = build_trainer(from_dict(LearnerConfig, naive))
    single_losses = [single.step(single.pad(batch()))["actor/pg_loss"] for _ in range(4)]
    losses = [json.loads((tmp_path / f"losses{r}.json").read_text()) for r in (0, 1)]
    assert losses[0] == losses[1]
    assert losses[0] == pytest.approx(single_losses, rel=1e-4, abs=1e-6)
    assert losses[0][-1] < losses[0][0]  # the loss goes down
    states = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1)]
    resumed = load_file(str(tmp_path / "resumed0.safetensors"))
    expected = single.engine.adapter_state()
    assert states[0].keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(states[0][name], states[1][name]), name  # ranks agree exactly
        assert torch.allclose(states[0][name], value, atol=2e-5), name
        assert torch.allclose(resumed[name], states[0][name], atol=1e-7), name


def test_learner_command_under_the_deepspeed_launcher(tiny_model_dir, tokenizer_dir, tmp_path):
    launcher = shutil.which("deepspeed", path=str(Path(sys.executable).parent))
    script = shutil.which("thoughtmdp", path=str(Path(sys.executable).parent))
    address, run_dir, port = free_address(), tmp_path / "run", free_port()
    # bind=, not --bind: the launcher would read --bind as its own --bind_cores_to_rank
    command = [
        launcher, "--num_gpus", "2", "--no_local_rank", "--master_port", str(port),
        script, "learner", f"bind={address}", f"model={tiny_model_dir}", f"run_dir={run_dir}",
        "deepspeed.zero_stage=3", "prompts_per_step=2", "prompts_per_minibatch=1",
        "max_steps=2", "checkpoint_every=2", "lora.rank=4", "lora.alpha=8",
    ]  # fmt: skip
    feeder = Feeder(address, [hand_episode(tokenizer_dir, f"train/{i}") for i in range(4)])
    try:
        env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
        log = tmp_path / "launcher.log"
        with open(log, "w") as out:
            code = subprocess.run(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=500
            )
        assert code.returncode == 0, log.read_text()[-3000:]
    finally:
        feeder.close()
    assert [n.version for n in feeder.notices] == [1, 2]
    # DeepSpeed's CPU all-reduce buffers (about 70 MB a rank) leave with the ranks
    assert not list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]  # rank 0 alone writes
    checkpoint = run_dir / "checkpoints" / "step-00000002"
    assert {p.name for p in checkpoint.glob("rng-rank*.json")} == {
        "rng-rank0.json",
        "rng-rank1.json",
    }
    assert len(list((checkpoint / "engine").glob("*optim_states.pt"))) == 2
    assert sorted(p.name for p in (run_dir / "adapters" / "v000002").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]


@pytest.fixture(scope="module")
def tokenizer_dir(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


# One step on a batch with a single group carrying gradient: rank 0 gets its shared-prefix
# pass, rank 1 only padding. With every weight gathered (persistence threshold 0) the ranks
# must call the model alike, or their all-gathers pair up wrongly and wait forever.
UNEVEN_WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from safetensors.torch import save_file
    from thoughtmdp.learners import build_trainer
    from thoughtmdp.settings.learner import LearnerConfig
    from thoughtmdp.settings.convert import from_dict
    from test_deepspeed import one_active_group

    config = from_dict(LearnerConfig, json.loads(sys.argv[1]))
    out = Path(sys.argv[2])
    trainer = build_trainer(config)
    loss = trainer.step(trainer.pad(one_active_group()))["actor/pg_loss"]
    rank = trainer.engine.rank
    save_file(trainer.engine.adapter_state(), str(out / f"rank{rank}.safetensors"))
    (out / f"loss{rank}.json").write_text(json.dumps(loss))
    """
)


def one_active_group():
    import dataclasses

    import numpy as np

    from thoughtmdp.learners.synthetic import random_episode

    episode = random_episode(np.random.default_rng(0), "p", 400, prompt_tokens=16, thought_tokens=6)
    base, reset = episode.groups
    base = dataclasses.replace(base, advantages=(0.0,) * len(base.advantages))
    return [dataclasses.replace(episode, groups=(base, reset))]


def test_zero3_ranks_with_uneven_work_and_every_weight_gathered_do_not_hang(
    tiny_model_dir, tmp_path
):
    from thoughtmdp.learners import build_trainer
    from thoughtmdp.settings.convert import from_dict
    from thoughtmdp.settings.learner import LearnerConfig

    ds_file = tmp_path / "ds.json"
    ds_file.write_text(
        json.dumps({"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}})
    )
    values = settings(tiny_model_dir, shared_prefix=True)
    values.update(deepspeed={"config_file": str(ds_file)}, gradient_checkpointing=True)
    values.update(prompts_per_step=1, prompts_per_minibatch=1)
    ranks = start_ranks(UNEVEN_WORKER, [json.dumps(values), str(tmp_path)], tmp_path)
    try:
        codes = [r.wait(timeout=int(os.environ.get("HANG_TIMEOUT", "400"))) for r in ranks]
    except subprocess.TimeoutExpired:
        pytest.fail("the ranks hung in a collective:\n" + (tmp_path / "rank1.log").read_text())
    finally:
        for r in ranks:
            r.kill()
    assert codes == [0, 0], (tmp_path / "rank0.log").read_text()[-3000:]
    naive = settings(tiny_model_dir)
    naive.update(prompts_per_step=1, prompts_per_minibatch=1)
    single = build_trainer(from_dict(LearnerConfig, naive))
    expected = single.step(single.pad(one_active_group()))["actor/pg_loss"]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"loss{rank}.json").read_text()) == pytest.approx(expected)
    state, reference = load_file(str(tmp_path / "rank1.safetensors")), single.engine.adapter_state()
    for name, value in reference.items():
        assert torch.allclose(state[name], value, atol=2e-5), name


# Each rank: the policy as build_trainer hands it to the engine (before deepspeed.initialize),
# one step, and the DeepSpeed config transformers loaded under against the engine's.
PARTITIONED_WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from safetensors.torch import save_file
    from transformers.integrations import deepspeed_config
    from thoughtmdp.learners import trainer as trainer_module
    from thoughtmdp.settings.learner import LearnerConfig
    from thoughtmdp.settings.convert import from_dict
    from test_deepspeed import batch

    config = from_dict(LearnerConfig, json.loads(sys.argv[1]))
    out = Path(sys.argv[2])
    loaded = {}
    build_engine = trainer_module.build_engine

    def inspect_then_build(model, config, device, ds_config=None):
        for name, p in model.named_parameters():
            if "lora_" not in name:
                share = p.ds_tensor.numel() if hasattr(p, "ds_tensor") else None
                loaded[name] = {"ds_id": hasattr(p, "ds_id"), "numel": p.numel(),
                                "share": share, "ds_numel": getattr(p, "ds_numel", None)}
        return build_engine(model, config, device, ds_config)

    trainer_module.build_engine = inspect_then_build
    trainer = trainer_module.build_trainer(config)
    lora_partitioned = all(
        hasattr(p, "ds_id") for p in trainer.engine.parameters.values()
    )
    loss = trainer.step(trainer.pad(batch()))["actor/pg_loss"]
    rank = trainer.engine.rank
    save_file(trainer.engine.adapter_state(), str(out / f"rank{rank}.safetensors"))
    report = {"loaded": loaded, "loss": loss, "lora_partitioned": lora_partitioned,
              "same_config": deepspeed_config() == trainer.engine.engine.config}
    (out / f"report{rank}.json").write_text(json.dumps(report))
    """
)


def test_zero3_ranks_load_the_base_model_partitioned_and_train_as_one_process(
    tiny_model_dir, tmp_path
):
    from thoughtmdp.learners import build_trainer
    from thoughtmdp.settings.convert import from_dict
    from thoughtmdp.settings.learner import LearnerConfig

    ds_file = tmp_path / "ds.json"
    ds_file.write_text(
        json.dumps({"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}})
    )
    values = settings(tiny_model_dir)
    values.update(deepspeed={"config_file": str(ds_file)}, prompts_per_minibatch=4)
    ranks = start_ranks(PARTITIONED_WORKER, [json.dumps(values), str(tmp_path)], tmp_path)
    codes = [r.wait(timeout=500) for r in ranks]
    assert codes == [0, 0], (tmp_path / "rank0.log").read_text()[-3000:]
    reports = [json.loads((tmp_path / f"report{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        assert report["loaded"], "no base weights"
        for name, weight in report["loaded"].items():  # a placeholder holding its half only
            assert weight["ds_id"] and weight["numel"] == 0, name
            assert weight["share"] == -(-weight["ds_numel"] // 2), name
        assert report["lora_partitioned"] and report["same_config"]
    naive = settings(tiny_model_dir)
    naive.update(prompts_per_minibatch=4)
    single = build_trainer(from_dict(LearnerConfig, naive))
    expected = single.step(single.pad(batch()))["actor/pg_loss"]
    assert reports[0]["loss"] == reports[1]["loss"] == pytest.approx(expected, rel=1e-4)
    state, reference = load_file(str(tmp_path / "rank1.safetensors")), single.engine.adapter_state()
    assert state.keys() == reference.keys()
    for name, value in reference.items():
        assert torch.allclose(state[name], value, atol=2e-5), name
