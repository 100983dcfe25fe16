"""Train configs: layering, derived keys, shipped configs, the config commands' errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from thoughtmdp.cli import main
from thoughtmdp.commands.config import load_config
from thoughtmdp.commands.train import load_train_config
from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.files import config_kind, read_config, shipped_configs
from thoughtmdp.settings.loader import load
from thoughtmdp.settings.train import (
    FREE_PORT,
    TrainConfig,
    actor_config,
    default_run_dir,
    learner_config,
    method_name,
    resolve,
)


def test_defaults_are_the_embedded_srpo_run():
    config = load_train_config(None, [])
    assert config.embedded and method_name(config) == "1x4-self"
    assert config.learner.bind == FREE_PORT
    resolved = resolve(config, Path("runs/x"), "tcp://127.0.0.1:7000")
    options = resolved.actor.task_options
    assert options["prompt_template"] == config.warmstart.prompt_template
    assert options["localizer_template"] == config.warmstart.localizer_template
    assert (
        resolved.learner.model == resolved.actor.model == str(Path(resolved.learner.model))
    )  # the recipe's cache folder
    assert config.warmstart.fingerprint() in resolved.learner.model


def test_derived_keys_tie_the_processes_together():
    config = load_train_config(None, ["actors=2", "actor.sampling.temperature=0.8"])
    resolved = resolve(config, Path("runs/x"), "tcp://127.0.0.1:7000")
    learner = learner_config(resolved)
    actors = [actor_config(resolved, k) for k in range(2)]
    assert learner.run_dir == Path("runs/x") and learner.bind == "tcp://127.0.0.1:7000"
    assert learner.loss.temperature == 0.8
    assert [a.name for a in actors] == ["actor-0", "actor-1"]
    assert [(a.shard, a.num_shards) for a in actors] == [(0, 2), (1, 2)]
    assert all(a.learner == learner.bind and a.lora_rank == learner.lora.rank for a in actors)
    assert actors[0].engine_options == {"dtype": "float32"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "learner.loss.temperature=0.5",
            "learner.loss.temperature is set by thoughtmdp train (from "
            "actor.sampling.temperature); set actor.sampling.temperature instead",
        ),
        (
            "actor.lora_rank=8",
            "actor.lora_rank is set by thoughtmdp train (from learner.lora.rank); set "
            "learner.lora.rank instead",
        ),
        (
            "learner.model=/m",
            "learner.model is set by thoughtmdp train (from model); set model instead",
        ),
    ],
)
def test_setting_a_derived_key_names_the_key_to_set(override, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_train_config(None, [override])


def test_a_resolved_config_loads_back(tmp_path, capsys):
    assert main(["config", "show", f"run_dir={tmp_path / 'run'}", "actors=2"]) == 0
    text = capsys.readouterr().out
    saved = tmp_path / "config.yaml"
    saved.write_text(text)
    again = load_train_config(str(saved), [])
    assert again == resolve(again, tmp_path / "run") and again.actors == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "learner.optim.rl=1e-4"],
            "thoughtmdp train: unknown key 'learner.optim.rl'. Did you mean 'learner.optim.lr'?",
        ),
        (
            ["train", "learner.optim.lr=fast"],
            "thoughtmdp train: learner.optim.lr: expected float, got 'fast'",
        ),
        (["train", "actors=0"], "thoughtmdp train: actors: expected 1 or more, got 0"),
        (
            ["train", "actor.batch_barrier=true", "actors=2"],
            "thoughtmdp train: actor.batch_barrier: actors x actor.in_flight (32) must equal "
            "learner.prompts_per_step (16)",
        ),
        (
            ["train", "-c", "paper/srpo-numinamath-qwen2.5"],
            "thoughtmdp train: no config file 'paper/srpo-numinamath-qwen2.5' and no shipped "
            "config of that name. Did you mean 'paper/srpo-numinamath-qwen2.5-14b'?",
        ),
    ],
)
def test_bad_settings_are_reported_before_anything_starts(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)


def test_exponent_floats_and_the_issue_example_parse():
    config = load_train_config(None, ["learner.optim.lr=1e-5", "actor.episode.presets=[1x8,srpo]"])
    assert config.learner.optim.lr == 1e-5
    assert method_name(config) == "1x8-self"


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_validates(name):
    config = load_config(config_kind(name), name, [])
    assert config is not None
    if config_kind(name) == "train" and name != "paper/table5":
        assert isinstance(config, TrainConfig) and not config.embedded


def test_paper_configs_carry_table_5():
    config = load_config("train", "paper/srpo-numinamath-olmo3-7b", [])
    learner, actor = config.learner, config.actor
    assert (learner.lora.rank, learner.lora.alpha, learner.optim.lr) == (64, 64, 5e-5)
    assert (learner.prompts_per_step, learner.prompts_per_minibatch) == (32, 8)
    assert (actor.sampling.temperature, actor.sampling.top_p, actor.sampling.max_tokens) == (
        0.7,
        0.95,
        256,
    )
    assert actor.max_thoughts == 20 and actor.episode.resolve().suffix_group_size == 4
    assert actor.engine_options["tensor_parallel_size"] == 2
    assert method_name(load_config("train", "paper/grpo-numinamath-olmo3-7b", [])) == "grpo8"
    assert (actor.max_prompt_tokens, actor.max_total_tokens) == (2048, 4096)


@pytest.mark.parametrize("method", ["grpo", "rrpo", "srpo"])
def test_livecodebench_configs_train_the_papers_11_steps(method):
    config = load_config("train", f"paper/{method}-lcb-medium-olmo3-7b", [])
    assert config.learner.max_steps == 11  # one epoch of 383 problems in full batches of 32


GPU_RECIPE = "gpu/srpo-math-qwen2.5-1.5b"


def test_the_gpu_recipe_is_srpo_on_one_shared_gpu():
    assert GPU_RECIPE in shipped_configs()
    config = load_train_config(GPU_RECIPE, [])
    assert config.model == "Qwen/Qwen2.5-1.5B-Instruct" and method_name(config) == "1x4-self"
    resolved = resolve(config, Path("runs/x"), "tcp://127.0.0.1:7000")
    learner, actor = learner_config(resolved), actor_config(resolved, 0)
    assert config.actors == 1 and learner.device == "cuda" and not learner.deepspeed.enabled
    assert actor.backend == "vllm" and "tensor_parallel_size" not in actor.engine_options
    assert actor.engine_options["dtype"] == learner.dtype == "bfloat16"
    assert 0 < actor.engine_options["gpu_memory_utilization"] <= 0.5  # the rest: the learner
    prompt, chain = actor.max_prompt_tokens, actor.max_total_tokens
    assert prompt is not None and chain is not None
    assert actor.engine_options["max_model_len"] > prompt + chain  # room for the localiser
    assert (actor.task, actor.task_options["preset"], actor.split) == ("math", "math", "train")
    assert (actor.in_flight, actor.batch_barrier) == (learner.prompts_per_step, True)
    assert learner.lora.rank <= 64 and actor.lora_rank == learner.lora.rank


def test_the_gpu_recipe_switches_to_grpo_and_rrpo():
    grpo = load_train_config(GPU_RECIPE, ["actor.episode.presets=[grpo]"])
    rrpo = load_train_config(GPU_RECIPE, ["actor.episode.presets=[1x4,rrpo]"])
    assert (method_name(grpo), method_name(rrpo)) == ("grpo8", "1x4-uniform")


def test_base_files_merge_and_a_cycle_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("actors: 2\nlearner: {max_steps: 3, optim: {lr: 0.1}}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\nlearner: {{max_steps: 5}}\n")
    config = load(TrainConfig, tmp_path / "b.yaml")
    assert (config.actors, config.learner.max_steps, config.learner.optim.lr) == (2, 5, 0.1)
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    with pytest.raises(ConfigError, match="its base chain loops"):
        read_config(tmp_path / "b.yaml")


def test_the_learner_command_reads_the_multinode_recipe(capsys):
    assert main(["config", "show", "-c", "multinode/learner"]) == 0
    out = capsys.readouterr().out
    assert "zero_stage: 3" in out and "allow_remote: true" in out


def test_a_file_setting_one_learner_key_keeps_the_tuned_defaults(tmp_path):
    path = tmp_path / "my_run.yaml"
    path.write_text("learner:\n  checkpoint_every: 7\n")
    learner = load_train_config(str(path), []).learner
    assert learner.checkpoint_every == 7
    assert (learner.bind, learner.lora.rank, learner.optim.schedule) == (FREE_PORT, 16, "cosine")
    assert (learner.max_steps, learner.prompts_per_step, learner.optim.lr) == (140, 16, 2e-4)


def test_train_help_and_config_show_give_the_values_train_uses(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    used = load_train_config(None, [])
    for line in (
        f"learner.prompts_per_step = {used.learner.prompts_per_step}:",
        f"learner.lora.rank = {used.learner.lora.rank}:",
        f"learner.optim.lr = {used.learner.optim.lr!r}:",
        f"actor.sampling.max_tokens = {used.actor.sampling.max_tokens}:",
        "learner.bind = 'tcp://127.0.0.1:0':",
        "actor.lora_rank = from learner.lora.rank:",
    ):
        assert f"\n  {line}" in help_text
    assert "learner.prompts_per_step = 16:" in help_text and "rank = 64" not in help_text
    assert main(["config", "show"]) == 0
    shown = capsys.readouterr().out
    assert "prompts_per_step: 16\n" in shown and "max_tokens: 24\n" in shown


def test_default_run_folders_are_unique_within_a_second():
    config = load_train_config(None, [])
    folders = {default_run_dir(config) for _ in range(50)}
    assert len(folders) == 50
    name = next(iter(folders)).name
    assert re.fullmatch(r"\d{8}-\d{6}\.\d{3}-[0-9a-f]{4}-1x4-self", name), name
