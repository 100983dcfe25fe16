"""The learner step on the tiny model: update direction, prefix masking, shared prefix, adapters."""

from __future__ import annotations

import json
import queue

import numpy as np
import pytest
import torch

from thoughtmdp import group_advantages
from thoughtmdp.episodes.arrays import training_arrays
from thoughtmdp.errors import ConfigError
from thoughtmdp.learners import (
    LearnerConfig,
    LoraSettings,
    LossSettings,
    OptimSettings,
    build_trainer,
)
from thoughtmdp.learners.batching import plan_microbatches
from thoughtmdp.learners.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from thoughtmdp.learners.metrics_log import MetricsLog, read_metrics
from thoughtmdp.learners.model.policy import cache_argument, gather_logprobs, token_logprobs
from thoughtmdp.learners.model.shared_prefix import shared_prefix_logprobs
from thoughtmdp.learners.publish import AdapterPublisher, sha256_of
from thoughtmdp.learners.stream import BatchAssembler
from thoughtmdp.learners.synthetic import random_episode
from thoughtmdp.types import (
    Episode,
    Group,
    PrefixState,
    ResetDecision,
    ResetRecord,
    Thought,
    Trajectory,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def config(model_dir, tmp_path=None, **changes):
    values = {
        "model": str(model_dir),
        "lora": LoraSettings(rank=4, alpha=8),
        "optim": OptimSettings(lr=1e-2, weight_decay=0.0),
        "prompts_per_step": 2,
        "prompts_per_minibatch": 2,
        "loss": LossSettings(temperature=1.0),
    }
    if tmp_path is not None:
        values["run_dir"] = tmp_path
    values.update(changes)
    return LearnerConfig(**values)


def thoughts(tok, texts, version=0):
    return tuple(
        Thought(t, tuple(tok.encode(t + "</thought>", add_special_tokens=False)), None, version)
        for t in texts
    )


def hand_episode(tok, problem_id="train/0", version=0):
    """A base group (one good, one bad chain) and a reset group sharing a one-thought prefix."""
    prompt = PrefixState(problem_id, tuple(tok.encode("Compute 3+4*2. ", add_special_tokens=False)))
    good = Trajectory(prompt, thoughts(tok, ["4*2=8", "3+8=11 \\boxed{11}"], version), 1.0, True)
    bad = Trajectory(prompt, thoughts(tok, ["3+4=7", "7*2=14 \\boxed{14}"], version), 0.0, True)
    start = PrefixState(problem_id, prompt.prompt_token_ids, thoughts(tok, ["4*2=8"], version))
    fixed = Trajectory(start, thoughts(tok, ["8+3=11 \\boxed{11}"], version), 1.0, True)
    wrong = Trajectory(start, thoughts(tok, ["8-3=5 \\boxed{5}"], version), 0.0, True)
    base = Group("base", (good, bad), tuple(group_advantages([1.0, 0.0])))
    reset = Group("reset", (fixed, wrong), tuple(group_advantages([1.0, 0.0])), reset_index=2)
    return Episode(problem_id, (base, reset), (ResetRecord(bad, ResetDecision(2, "oracle")),))


def sampled_logprob_sums(trainer, episodes):
    arrays = training_arrays(episodes, trainer.pad_id)
    with torch.no_grad():
        logprobs = token_logprobs(trainer.engine.model, torch.from_numpy(arrays.input_ids), 1.0)
    return (logprobs * torch.from_numpy(arrays.loss_mask)).sum(-1), arrays.advantages


def test_updates_raise_positive_and_lower_negative_suffixes(tiny_model_dir, tokenizer):
    episodes = [hand_episode(tokenizer, "train/0"), hand_episode(tokenizer, "train/1")]
    trainer = build_trainer(config(tiny_model_dir))
    before, advantages = sampled_logprob_sums(trainer, episodes)
    for _ in range(4):
        metrics = trainer.step(trainer.pad(episodes))
    after, _ = sampled_logprob_sums(trainer, episodes)
    change = (after - before).numpy()
    assert np.all(change[advantages > 0] > 0.05)
    assert np.all(change[advantages < 0] < -0.05)
    assert metrics["actor/lr"] == 1e-2
    assert metrics["signal/base_mean"] > 0 and metrics["signal/reset_mean"] > 0
    assert metrics["response_length/mean"] == pytest.approx(
        np.mean(training_arrays(episodes).loss_mask.sum(1))
    )
    assert metrics["critic/score/mean"] == 0.5


def test_masked_prefix_tokens_get_no_direct_loss_term(tiny_model_dir, tokenizer):
    trainer = build_trainer(config(tiny_model_dir))
    arrays = training_arrays([hand_episode(tokenizer)], trainer.pad_id)
    ids = torch.from_numpy(arrays.input_ids)
    logits = trainer.engine.model(
        input_ids=ids, attention_mask=torch.from_numpy(arrays.attention_mask)
    ).logits
    logits.retain_grad()
    logprobs = torch.cat(
        [torch.zeros(ids.shape[0], 1), gather_logprobs(logits[:, :-1], ids[:, 1:], 1.0)], dim=1
    )
    loss, _ = trainer.loss(
        logprobs, torch.from_numpy(arrays.loss_mask), torch.from_numpy(arrays.advantages)
    )
    loss.backward()
    # the logits at position t score token t+1: they get a gradient only where t+1 is sampled
    scored = torch.from_numpy(arrays.loss_mask)[:, 1:]
    per_position = logits.grad[:, :-1].abs().sum(-1)  # (B, T-1)
    assert torch.all(per_position[~scored] == 0)
    assert torch.all(per_position[scored] > 0)
    reset_rows = np.flatnonzero(arrays.group_ids == 1)
    assert arrays.prefix_lengths[reset_rows[0]] > arrays.prefix_lengths[0]  # prefix is masked


def test_shared_prefix_forward_matches_the_naive_one_with_gradients(tiny_model_dir):
    trainer = build_trainer(config(tiny_model_dir))
    model = trainer.engine.model
    with torch.no_grad():  # a non-zero adapter, so gradients reach both LoRA matrices
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    torch.manual_seed(0)
    prefix, rows = 12, 4
    ids = torch.cat(
        [torch.randint(1, 400, (1, prefix)).expand(rows, -1), torch.randint(1, 400, (rows, 9))], 1
    )
    attention = torch.ones_like(ids, dtype=torch.bool)
    attention[1, -3:] = attention[2, -1:] = False  # right padding
    mask = attention.clone()
    mask[:, :prefix] = False

    def run(forward):
        model.zero_grad()
        logprobs = forward()
        (logprobs * mask).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return logprobs.detach(), grads

    def masked():  # the reference: an explicit attention mask over the right padding
        logits = model(input_ids=ids, attention_mask=attention).logits
        return torch.cat(
            [torch.zeros(rows, 1), gather_logprobs(logits[:, :-1], ids[:, 1:], 0.7)], 1
        )

    reference, reference_grads = run(masked)
    naive, naive_grads = run(lambda: token_logprobs(model, ids, 0.7, prefix))
    shared, shared_grads = run(
        lambda: shared_prefix_logprobs(model, ids, prefix, 0.7, cache_argument(model))
    )
    assert torch.allclose(reference[mask], naive[mask], atol=1e-5)
    assert torch.allclose(naive[mask], shared[mask], atol=1e-5)
    for name, grad in naive_grads.items():
        assert torch.allclose(grad, reference_grads[name], atol=1e-5, rtol=1e-4), name
        assert torch.allclose(grad, shared_grads[name], atol=1e-5, rtol=1e-4), name
    assert any(g.abs().sum() > 0 for n, g in shared_grads.items() if "k_proj" in n)


def test_shared_prefix_training_matches_naive_training(tiny_model_dir):
    rng = np.random.default_rng(0)
    episodes = [
        random_episode(rng, f"p{i}", 400, prompt_tokens=20, thought_tokens=6) for i in range(2)
    ]
    states, losses = [], []
    for shared in (False, True):
        trainer = build_trainer(config(tiny_model_dir, shared_prefix=shared))
        losses.append([trainer.step(trainer.pad(episodes))["actor/pg_loss"] for _ in range(2)])
        states.append(trainer.engine.adapter_state())
    assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-6)
    # Adam divides by sqrt(v): where a gradient is within float rounding of zero, its update
    # can differ by up to lr, so the check is on the bulk of the weights and a bound per weight
    for name, value in states[0].items():
        diff = (value - states[1][name]).abs()
        assert diff.max() < 1e-3 and diff.mean() < 1e-5, (name, diff.max(), diff.mean())


def test_micro_batches_are_padded_to_the_same_count_on_every_rank():
    arrays = training_arrays([random_episode(np.random.default_rng(1), "p", 50)])
    plans = plan_microbatches(arrays, world_size=3, rows_per_micro=3, shared_prefix=True)
    assert [len(p) for p in plans] == [2, 2, 2]  # rank 2 has no group: two fillers
    assert [m.weight for m in plans[2]] == [0.0, 0.0]
    active = {r for plan in plans for m in plan if m.weight for r in m.rows}
    assert active == set(np.flatnonzero(arrays.advantages != 0).tolist())


def test_every_rank_runs_the_same_kinds_of_pass_in_the_same_order():
    """ZeRO-3 gathers weights at each module call: a shared-prefix pass calls the model twice."""
    rng = np.random.default_rng(1)
    episodes = [random_episode(rng, f"p{i}", 50, base_group_size=3) for i in range(2)]
    arrays = training_arrays(episodes)
    arrays.advantages[arrays.group_ids == 2] = 0  # one group fewer: uneven work per rank
    arrays.advantages[np.flatnonzero(arrays.group_ids == 1)[1:]] = 0  # a one-row group
    plans = plan_microbatches(arrays, world_size=2, rows_per_micro=2, shared_prefix=True)
    kinds = [[m.shared for m in plan] for plan in plans]
    assert kinds[0] == kinds[1] and True in kinds[0] and False in kinds[0]
    assert all(m.first_target < m.width for plan in plans for m in plan if m.shared)
    active = {r for plan in plans for m in plan if m.weight for r in m.rows}
    assert active == set(np.flatnonzero(arrays.advantages != 0).tolist())


def test_published_adapter_loads_with_peft_and_reproduces_the_policy(
    tiny_model_dir, tokenizer, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trainer = build_trainer(config(tiny_model_dir))
    trainer.step(trainer.pad([hand_episode(tokenizer)]))
    publisher = AdapterPublisher(tmp_path / "adapters")
    notice = publisher.publish(trainer.engine.model, trainer.engine.adapter_state(), 1)
    folder = tmp_path / "adapters" / "v000001"
    assert notice.path == str(folder.resolve()) and not notice.files
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert notice.sha256 == sha256_of(folder / "adapter_model.safetensors")
    assert publisher.latest_version() == 1 and not list((tmp_path / "adapters").glob(".*"))
    loaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), folder
    ).eval()
    ids = torch.tensor([tokenizer.encode("Compute 3+4*2. 4*2=8", add_special_tokens=False)])
    trainer.engine.model.eval()
    with torch.no_grad():
        assert torch.allclose(
            loaded(input_ids=ids).logits, trainer.engine.model(input_ids=ids).logits, atol=1e-5
        )
    inline = AdapterPublisher(tmp_path / "adapters", inline=True).notice(1)
    assert inline.path is None
    assert (
        dict(inline.files)["adapter_model.safetensors"]
        == (folder / "adapter_model.safetensors").read_bytes()
    )


def test_linear_schedule_warms_up_then_decays_per_optimiser_step(tiny_model_dir, tokenizer):
    schedule = OptimSettings(lr=1e-2, schedule="linear", warmup_steps=2, final_lr_ratio=0.2)
    trainer = build_trainer(
        config(tiny_model_dir, optim=schedule, max_steps=3, prompts_per_minibatch=1)
    )  # 3 steps x 2 mini-batches: optimiser steps 0-5, warm-up 0-1, decay 2-5
    batch = trainer.pad([hand_episode(tokenizer)] * 2)
    lrs = [trainer.step(batch)["actor/lr"] for _ in range(3)]
    assert lrs == pytest.approx([0.5e-2, 1e-2, 1e-2 * (0.2 + 0.8 / 3)])  # steps 0, 2, 4
    assert trainer.engine.lr == pytest.approx(0.2e-2)  # reached the floor at the last step


def test_a_decaying_schedule_needs_the_run_length():
    with pytest.raises(ConfigError, match="optim.schedule=cosine.*set max_steps"):
        LearnerConfig(optim=OptimSettings(schedule="cosine"))
    with pytest.raises(ConfigError, match="optim.final_lr_ratio"):
        LearnerConfig(max_steps=2, optim=OptimSettings(schedule="linear", final_lr_ratio=2.0))


def test_checkpoint_restores_adapter_optimiser_schedule_and_rng(
    tiny_model_dir, tokenizer, tmp_path
):
    episodes = [hand_episode(tokenizer)]
    decaying = {"optim": OptimSettings(lr=1e-2, schedule="cosine"), "max_steps": 4}
    first = build_trainer(config(tiny_model_dir, **decaying))
    first.step(first.pad(episodes))
    torch.manual_seed(123)
    path = save_checkpoint(tmp_path, 1, first.engine, {"step": 1}, keep=2)
    expected_draw = torch.rand(3)
    assert latest_checkpoint(tmp_path) == path and path.name == "step-00000001"
    second = build_trainer(config(tiny_model_dir, seed=7, **decaying))
    assert load_checkpoint(path, second.engine) == {"step": 1}
    assert second.engine.lr == pytest.approx(first.engine.lr) and first.engine.lr < 1e-2
    assert torch.equal(torch.rand(3), expected_draw)
    first.step(first.pad(episodes))
    second.step(second.pad(episodes))  # the same Adam moments give the same update
    for name, value in first.engine.adapter_state().items():
        assert torch.allclose(value, second.engine.adapter_state()[name], atol=1e-6), name


def test_staleness_rule_skips_or_keeps_and_counts():
    rng = np.random.default_rng(0)
    fresh = random_episode(rng, "fresh", 50, policy_version=5)
    stale = random_episode(rng, "stale", 50, policy_version=2)
    broken = Episode(
        "broken", (Group("base", (Trajectory(PrefixState("broken"), (Thought("x"),)),), (0.0,)),)
    )
    source = queue.Queue()
    for episode in (stale, broken, fresh, stale, fresh):
        source.put(("actor-0", episode))
    skip = BatchAssembler(source, size=2, max_lag=2)
    batch, metrics = skip.next_batch(version=5)
    assert [e.problem_id for e in batch] == ["fresh", "fresh"]
    assert metrics == {
        "staleness/skipped": 2.0,
        "staleness/reweighted": 0.0,
        "staleness/lag/max": 3.0,
        "learner/rejected_episodes": 1.0,
        "learner/episodes/actor-0": 5.0,
    }
    assert skip.consumed == {"actor-0": 5}
    source.put(("a", stale))
    source.put(("b", fresh))
    batch, metrics = BatchAssembler(source, 2, max_lag=2, skip_stale=False).next_batch(5)
    assert [e.problem_id for e in batch] == ["stale", "fresh"]
    assert metrics["staleness/reweighted"] == 1.0


def test_metrics_log_writes_json_lines_and_tensorboard(tmp_path):
    log = MetricsLog(tmp_path)
    log.write(1, {"actor/pg_loss": 0.5})
    log.write(2, {"actor/pg_loss": 0.25})
    log.close()
    records = read_metrics(tmp_path)
    assert [(r["step"], r["actor/pg_loss"]) for r in records] == [(1, 0.5), (2, 0.25)]
    pytest.importorskip("tensorboard")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_deepspeed_config_from_a_user_file_keeps_zero_and_pins_batching(tmp_path):
    from thoughtmdp.settings.deepspeed import DeepSpeedSettings, deepspeed_config

    user = {
        "zero_optimization": {"stage": 3, "overlap_comm": True},
        "optimizer": {"type": "Adam"},
        "scheduler": {"type": "WarmupLR"},
        "train_batch_size": 64,
        "bf16": {"enabled": True},
    }
    file = tmp_path / "ds.json"
    file.write_text(json.dumps(user))
    settings = LearnerConfig(deepspeed=DeepSpeedSettings(config_file=file))
    assert deepspeed_config(settings, world_size=4) == {
        "zero_optimization": {"stage": 3, "overlap_comm": True},
        "bf16": {"enabled": True},
        "data_types": {"grad_accum_dtype": "fp32"},
        "train_batch_size": 4,
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "steps_per_print": 2**31 - 1,
    }
    overridden = LearnerConfig(deepspeed=DeepSpeedSettings(zero_stage=2, config_file=file))
    assert deepspeed_config(overridden, 2)["zero_optimization"] == {
        "stage": 2,
        "overlap_comm": True,
    }


def test_the_transformers_floor_loads_with_dtype_and_layered_caches():
    """``from_pretrained(dtype=...)`` and ``DynamicCache.layers`` arrived in transformers 4.56."""
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    (spec,) = [d for d in project["project"]["dependencies"] if d.startswith("transformers")]
    floor = tuple(int(x) for x in re.fullmatch(r"transformers>=([\d.]+)", spec)[1].split("."))
    assert floor >= (4, 56)
