"""The precision policy: bf16 compute on fp32 master weights, bf16 adapters out, fp32 in.

Under ``dtype=bfloat16`` the base model is bf16, the LoRA weights, their gradients and AdamW
stay fp32, the forward (LoRA layers included) computes in bf16, published adapters are bf16
and checkpoints keep the fp32 weights. DeepSpeed gets the same policy from its config.
"""

from __future__ import annotations

import queue

import pytest
import torch
from safetensors import safe_open
from test_learner import config, hand_episode

from thoughtmdp.errors import ConfigError
from thoughtmdp.learners import LearnerLoop, build_trainer
from thoughtmdp.learners.checkpoint import latest_checkpoint
from thoughtmdp.settings.deepspeed import DeepSpeedSettings, deepspeed_config
from thoughtmdp.settings.learner import LearnerConfig


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def dtypes_in(path):
    with safe_open(str(path), "pt") as weights:
        return {weights.get_slice(k).get_dtype() for k in weights.keys()}  # noqa: SIM118


def test_bf16_forward_runs_the_adapter_in_bf16_on_fp32_master_weights(tiny_model_dir, tokenizer):
    trainer = build_trainer(config(tiny_model_dir, dtype="bfloat16", device="cpu"))
    model = trainer.engine.model
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert {p.dtype for p in lora.values()} == {torch.float32}
    assert {p.dtype for n, p in model.named_parameters() if n not in lora} == {torch.bfloat16}
    seen, grads = [], []
    layer = next(m for n, m in model.named_modules() if n.endswith("lora_A.default"))
    layer.register_forward_hook(lambda _m, args, out: seen.append((args[0].dtype, out.dtype)))
    name, weight = next((n, p) for n, p in lora.items() if "lora_B" in n)  # A's grad is 0
    weight.register_hook(lambda grad: grads.append(grad.dtype))
    before = weight.detach().clone()

    metrics = trainer.step(trainer.pad([hand_episode(tokenizer)]))

    assert seen and set(seen) == {(torch.bfloat16, torch.bfloat16)}  # no fp32 copy of inputs
    assert grads and set(grads) == {torch.float32}
    assert torch.isfinite(torch.tensor(metrics["actor/pg_loss"]))
    assert weight.dtype == torch.float32 and not torch.equal(weight.detach(), before), name


def one_learner_step(model_dir, tokenizer, run_dir, **changes):
    """One step of the learner process on one episode; the published version 1's file."""
    source: queue.Queue = queue.Queue()
    source.put(("actor-0", hand_episode(tokenizer, "train/0")))
    settings = config(
        model_dir, run_dir, prompts_per_step=1, prompts_per_minibatch=1, signal_map_every=0,
        **changes,
    )  # fmt: skip
    loop = LearnerLoop(settings, build_trainer(settings), source=source)
    try:
        loop.run_step()
    finally:
        loop.close()
    return run_dir / "adapters" / "v000001" / "adapter_model.safetensors"


def test_a_bf16_run_publishes_bf16_adapters_and_checkpoints_fp32_weights(
    tiny_model_dir, tokenizer, tmp_path
):
    published = one_learner_step(
        tiny_model_dir, tokenizer, tmp_path, dtype="bfloat16", device="cpu", checkpoint_every=1
    )
    assert dtypes_in(published) == {"BF16"}
    checkpoint = latest_checkpoint(tmp_path)
    assert checkpoint is not None
    assert dtypes_in(checkpoint / "adapter_state.safetensors") == {"F32"}


def test_an_fp32_run_publishes_fp32_adapters(tiny_model_dir, tokenizer, tmp_path):
    published = one_learner_step(tiny_model_dir, tokenizer, tmp_path, checkpoint_every=0)
    assert dtypes_in(published) == {"F32"}


def test_deepspeed_accumulates_bf16_gradients_in_fp32_unless_the_file_says_otherwise(tmp_path):
    bf16 = LearnerConfig(dtype="bfloat16", deepspeed=DeepSpeedSettings(zero_stage=3))
    assert deepspeed_config(bf16, 2)["data_types"] == {"grad_accum_dtype": "fp32"}
    fp32 = LearnerConfig(deepspeed=DeepSpeedSettings(zero_stage=3))
    assert "data_types" not in deepspeed_config(fp32, 2)
    own = tmp_path / "ds.json"
    own.write_text('{"bf16": {"enabled": true}, "data_types": {"grad_accum_dtype": "bf16"}}')
    mine = LearnerConfig(deepspeed=DeepSpeedSettings(zero_stage=2, config_file=own))
    assert deepspeed_config(mine, 2)["data_types"] == {"grad_accum_dtype": "bf16"}


def test_bf16_without_zero_is_refused_as_it_would_have_no_fp32_master_weights(tmp_path):
    with pytest.raises(ConfigError, match="deepspeed.zero_stage=0 with dtype=bfloat16"):
        LearnerConfig(dtype="bfloat16", deepspeed=DeepSpeedSettings(zero_stage=0))
    own = tmp_path / "ds.json"
    own.write_text('{"bf16": {"enabled": true}}')
    from_file = LearnerConfig(deepspeed=DeepSpeedSettings(config_file=own))
    with pytest.raises(ConfigError, match="no fp32 master weights"):
        deepspeed_config(from_file, 2)
