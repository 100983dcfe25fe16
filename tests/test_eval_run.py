"""Evaluating a run as it was trained: ``eval --run`` and ``audit-localization --run``.

The run folders are real: a resolved train config written as ``thoughtmdp train`` writes it, a
PEFT adapter version under ``adapters/`` and, for ``eval``, the held-out record that train's
own evaluator (:class:`~thoughtmdp.training.run.HeldoutEvaluator`) writes. The model is the
tiny random test model, so the task below makes each chain's text visible in its reward.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from thoughtmdp import Problem, Score, VerifiableTask, register_task
from thoughtmdp.cli import main
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.evaluation.trained import from_config, from_run, policy_from_args
from thoughtmdp.runs.files import CONFIG_FILE, read_heldout, read_jsonl
from thoughtmdp.settings.actor import ActorConfig
from thoughtmdp.settings.convert import to_dict
from thoughtmdp.settings.train import HeldoutSettings, TrainConfig, embedded_actor, resolve
from thoughtmdp.settings.warmstart import TINY_PROMPT, WarmStartRecipe, model_folder
from thoughtmdp.training import launch
from thoughtmdp.wire import ADAPTER_FILES

PROMPT = "Think about {question}, then answer.\n"
"""The runs' rollout prompt: not the task's default, as the embedded policy's is not."""
PROBLEMS = 16


@register_task("chain_hash")
class ChainHash(VerifiableTask):
    """One-thought chains rewarded by a hash of their text: equal rewards, equal chains."""

    name = "chain_hash"

    def problems(self, split: str) -> list[Problem]:
        return [
            Problem(f"{split}/{i}", f"{i * 7919 % 1000} and {i**3}?", "", split)
            for i in range(PROBLEMS)
        ]

    def is_final(self, thought: str) -> bool:
        return True

    def score(self, problem: Problem, thoughts: list[str]) -> Score:
        return Score((zlib.crc32("".join(thoughts).encode()) % 1024) / 1023)


def write_run(run_dir: Path, model: Path, actor: ActorConfig) -> TrainConfig:
    """A resolved run config in ``run_dir`` and a random (non-zero) LoRA adapter, version 1."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = TrainConfig(
        model=str(model),
        actor=actor,
        heldout=HeldoutSettings(problems=PROBLEMS, versions=1, concurrency=16),
        plots=False,
    )
    resolved = resolve(config, run_dir)
    launch.write_yaml(run_dir / CONFIG_FILE, resolved)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    lora.init_lora_weights = False  # random B as well as A: the adapter changes the chains
    torch.manual_seed(0)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(model), lora)
    peft.save_pretrained(run_dir / "adapters" / "v000001")
    return resolved


@pytest.fixture(scope="module")
def hash_run(tiny_model_dir, tmp_path_factory):
    """A run on ``chain_hash`` whose versions 0 and 1 train's evaluator has scored."""
    from thoughtmdp.training.run import HeldoutEvaluator

    run_dir = tmp_path_factory.mktemp("hash") / "run"
    actor = replace(
        embedded_actor(),
        task="chain_hash",
        task_options={"prompt_template": PROMPT},
        backend="transformers",
    )
    resolved = write_run(run_dir, tiny_model_dir, actor)
    HeldoutEvaluator(resolved, Console(file=io.StringIO()))([0, 1])
    return run_dir


def rewards_by_row(out: Path) -> dict[str | None, dict[str, float]]:
    rows: dict[str | None, dict[str, float]] = {}
    for record in read_jsonl(out / "records.jsonl"):
        rows.setdefault(record["adapter"], {})[record["problem_id"]] = record["reward"]
    return rows


def test_eval_of_a_run_scores_what_its_heldout_evaluation_scored(
    hash_run, tiny_model_dir, tmp_path, capsys
):
    records = read_heldout(hash_run).items()
    heldout = {v: dict(zip(r["problem_ids"], r["rewards"], strict=True)) for v, r in records}
    assert len(set(heldout[1].values())) >= 4  # the problems got chains of their own
    out = tmp_path / "eval"
    assert main(["eval", "--run", str(hash_run), "--base", "--out", str(out)]) == 0
    adapter = str((hash_run / "adapters" / "v000001").resolve())
    assert rewards_by_row(out) == {None: heldout[0], adapter: heldout[1]}
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["max_tokens"] == 24 and results["settings"]["max_thoughts"] == 6
    assert "warning" not in capsys.readouterr().err
    # the same adapter and caps without the run: the task's default prompt, other chains
    bare = tmp_path / "bare"
    args = ["eval", "--model", str(tiny_model_dir), "--adapter", adapter, "--tasks", "chain_hash"]
    args += ["--n", str(PROBLEMS), "--max-tokens", "24", "--backend", "transformers"]
    assert main([*args, "--out", str(bare)]) == 0
    assert rewards_by_row(bare)[adapter] != heldout[1]


def test_eval_run_options_left_out_take_the_runs_values(hash_run, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "--run", str(hash_run), "--version", "0", "--n", "3", "--max-tokens", "5"]
    assert main([*args, "--out", str(out)]) == 0
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert (settings["max_tokens"], settings["max_thoughts"], settings["n"]) == (5, 6, 3)
    assert settings["methods"] == {"base": [None]}
    assert settings["tasks"] == {"chain_hash": {"task": "chain_hash", "prompt_template": PROMPT}}


def test_audit_of_a_run_samples_chains_as_the_run_did(tiny_model_dir, tmp_path, capsys):
    actor = replace(embedded_actor(), backend="transformers")  # arith_chain, 6 thoughts
    run_dir = tmp_path / "run"
    write_run(run_dir, tiny_model_dir, replace(actor, task_options={"prompt_template": PROMPT}))
    out = tmp_path / "audit"
    args = ["audit-localization", "--run", str(run_dir), "--n", "3", "--suffixes", "0"]
    assert main([*args, "--localizer-max-tokens", "4", "--out", str(out)]) == 0
    summary = json.loads((out / "audit.json").read_text())
    assert summary["chains"] == 3
    lengths = {len(r["thoughts"]) for r in read_jsonl(out / "audit_records.jsonl")}
    assert lengths and max(lengths) <= 6  # the run's cap, not the audit's default of 20
    assert "warning" not in capsys.readouterr().err


def test_a_model_trained_on_another_prompt_is_named_in_a_warning(tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "embedded"
    shutil.copytree(tiny_model_dir, model)
    (model / "recipe.json").write_text(json.dumps(to_dict(WarmStartRecipe())))
    small = ["--n", "1", "--max-thoughts", "1", "--max-tokens", "2", "--backend", "transformers"]
    args = ["eval", "--model", str(model), "--tasks", "arith_chain", *small]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert re.search(
        r"^warning: task 'arith_chain' renders its prompt_template as 'Work through the problem "
        r"below in small \.\.\.', but the model was trained with 'Q: \{question\}\\n' "
        rf"\({re.escape(str(model / 'recipe.json'))}\)",
        err,
        re.MULTILINE,
    ), err
    config = tmp_path / "train.yaml"  # an embedded run's config: the recipe's prompt is derived
    config.write_text("heldout: {problems: 1}\n")
    args = ["eval", "--config", str(config), "--model", str(model), *small]
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert "warning" not in capsys.readouterr().err
    audit = ["audit-localization", "--model", str(model), "--task", "arith_chain", *small]
    audit += ["--suffixes", "0", "--localizer-max-tokens", "2"]
    assert main([*audit, "--out", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert "renders its prompt_template" in err and "renders its localizer_template" in err


def test_an_embedded_runs_config_gives_the_recipes_prompts_and_the_runs_caps(tmp_path):
    resolved = resolve(TrainConfig(), tmp_path)
    launch.write_yaml(tmp_path / CONFIG_FILE, resolved)
    policy = from_run(tmp_path, version=0)
    assert policy.model == str(model_folder(WarmStartRecipe()))
    assert policy.adapter is None
    assert policy.task_options["prompt_template"] == TINY_PROMPT
    assert policy.greedy == resolved.heldout.eval_settings(resolved.actor)
    assert (policy.sampled.temperature, policy.sampled.top_p) == (0.6, 1.0)
    assert policy.problems == 1000
    actor_file = tmp_path / "actor-0.yaml"
    launch.write_yaml(actor_file, resolved.actor)
    assert from_config(actor_file).task_options == policy.task_options


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (False, [], r"^run folder {run} does not exist$"),
        (True, [], r"^{run} holds no config\.yaml \(the settings thoughtmdp train writes\)"),
        ("config", [], r"^{run}/adapters holds no adapter version; the learner publishes"),
        ("v1", ["--version", "3"], r"^{run}/adapters/v000003 does not exist; {run}/adapters holds"),
        ("config", ["--config", "x.yaml"], r"^give --run or --config, not both$"),
    ],
)
def test_bad_run_folders_are_named(tmp_path, make, args, message):
    run = tmp_path / "run"
    if make:
        run.mkdir()
    if make in ("config", "v1"):
        launch.write_yaml(run / CONFIG_FILE, resolve(TrainConfig(), run))
    if make == "v1":  # the files a published version holds (their contents are not read)
        (run / "adapters" / "v000001").mkdir(parents=True)
        for name in ADAPTER_FILES:
            (run / "adapters" / "v000001" / name).write_text("{}")
    namespace = {"run": str(run), "config": None, "version": None, "model": None}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        namespace[flag[2:]] = int(value) if flag == "--version" else value
    with pytest.raises(ThoughtMDPError, match=message.format(run=re.escape(str(run)))):
        policy_from_args(argparse.Namespace(**namespace))


def test_eval_needs_a_model_or_a_run(capsys):
    assert main(["eval", "--tasks", "arith_chain"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("give --model (or --run RUN_DIR to evaluate a run as it was trained)")
    )
