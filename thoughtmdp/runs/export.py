"""Taking a run's model elsewhere: an adapter version, its model card, a merged model, the Hub.

A run folder holds what :mod:`thoughtmdp.runs.files` lists and, from the learner,
``adapters/v{N:06d}/`` (PEFT's ``adapter_config.json`` and ``adapter_model.safetensors``)
and ``config.json`` (the learner's settings). :func:`find_adapter` reads one version and what
the run says about it: the base model, the method, the learner step that published it and the
held-out pass rates. :func:`write_adapter` and :func:`write_merged` write it out with a Hugging
Face model card (:func:`model_card`); :func:`push_to_hub` uploads the result.

torch, transformers, peft and huggingface_hub load only inside the functions that use them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from thoughtmdp.errors import DependencyNotInstalled, ThoughtMDPError
from thoughtmdp.runs.files import CONFIG_FILE, METRICS_FILE, read_heldout, read_jsonl
from thoughtmdp.runs.summary import heldout_summary
from thoughtmdp.wire import ADAPTER_FILES

ADAPTERS_DIR = "adapters"
LEARNER_CONFIG_FILE = "config.json"  # the learner's; a `thoughtmdp learner` run has only this
CARD_FILE = "README.md"
DTYPES = ("float32", "bfloat16", "float16")
VERSION_DIR = re.compile(r"^v(\d{6,})$")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
RESET_POLICIES = {
    "uniform": "RRPO: the reset step is drawn uniformly",
    "self": "SRPO: the policy names the first wrong step itself",
    "oracle": "the task's step oracle names the first wrong step",
}


@dataclass(frozen=True)
class RunAdapter:
    """One adapter version of a run, and what the run records about it.

    Attributes:
        run_dir: The run folder.
        version: The adapter version.
        folder: Its folder, ``run_dir/adapters/v{version:06d}``.
        base_model: The base model the learner trained, a folder or a Hub id.
        embedded: Whether that is the embedded tiny policy (a cache folder).
        method: :func:`~thoughtmdp.settings.train.method_name` of the run, e.g. ``1x4-self``
            (``None`` for a run of ``thoughtmdp learner`` alone).
        method_detail: The episode shape and reset policy in words (``""`` when unknown).
        task: The task trained on (``None`` when unknown).
        step: The learner step that published the version (``None`` without metrics).
        dtype: The learner's parameter dtype.
        heldout: :func:`~thoughtmdp.runs.summary.heldout_summary` of ``heldout.json``, with
            ``split`` added (empty when the run evaluated nothing).
    """

    run_dir: Path
    version: int
    folder: Path
    base_model: str
    embedded: bool = False
    method: str | None = None
    method_detail: str = ""
    task: str | None = None
    step: int | None = None
    dtype: str = "float32"
    heldout: dict[str, Any] = field(default_factory=dict)


def adapter_versions(run_dir: Path) -> list[int]:
    """The complete adapter versions of a run, in order (empty when it has none).

    >>> adapter_versions(Path("no/such/run"))
    []
    """
    root = Path(run_dir) / ADAPTERS_DIR
    if not root.is_dir():
        return []
    return sorted(
        int(match.group(1))
        for path in root.iterdir()
        if (match := VERSION_DIR.match(path.name))
        and all((path / name).is_file() for name in ADAPTER_FILES)
    )


def find_adapter(run_dir: Path, version: int | None = None) -> RunAdapter:
    """Version ``version`` (default: the latest) of a run's adapters, described.

    Raises:
        ThoughtMDPError: If the run folder, its adapters, the version or its config is missing.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ThoughtMDPError(f"run folder {run_dir} does not exist")
    versions = adapter_versions(run_dir)
    root = run_dir / ADAPTERS_DIR
    if not versions:
        raise ThoughtMDPError(
            f"{root} holds no adapter version; the learner publishes one after each step"
        )
    version = versions[-1] if version is None else version
    if version not in versions:
        listed = ", ".join(str(v) for v in versions)
        raise ThoughtMDPError(
            f"{root / f'v{version:06d}'} does not exist; {root} holds versions {listed}"
        )
    settings = _run_settings(run_dir)
    split = settings.pop("split", None)
    heldout = heldout_summary(read_heldout(run_dir))
    if heldout:
        heldout["split"] = split
    return RunAdapter(
        run_dir,
        version,
        root / f"v{version:06d}",
        step=_step_of(run_dir, version),
        heldout=heldout,
        **settings,
    )


def _run_settings(run_dir: Path) -> dict[str, Any]:
    """The base model, method, task, dtype and held-out split the run's config names."""
    if (run_dir / CONFIG_FILE).is_file():
        from thoughtmdp.settings.loader import load
        from thoughtmdp.settings.train import TrainConfig, method_name

        config = load(TrainConfig, run_dir / CONFIG_FILE)
        episode = config.actor.episode.resolve()
        detail = f"{episode.base_group_size} base rollouts a prompt"
        if episode.num_resets:
            policy = RESET_POLICIES.get(episode.reset_policy, episode.reset_policy)
            detail += (
                f", {episode.num_resets} reset group(s) of {episode.suffix_group_size} "
                f"suffix rollouts ({policy})"
            )
        return {
            "base_model": config.learner.model,
            "embedded": config.embedded,
            "method": method_name(config),
            "method_detail": detail,
            "task": config.actor.task,
            "dtype": config.learner.dtype,
            "split": config.heldout.split,
        }
    if (run_dir / LEARNER_CONFIG_FILE).is_file():
        learner = json.loads((run_dir / LEARNER_CONFIG_FILE).read_text())
        return {"base_model": learner["model"], "dtype": learner.get("dtype", "float32")}
    raise ThoughtMDPError(
        f"{run_dir} holds neither {CONFIG_FILE} nor {LEARNER_CONFIG_FILE}, so its base model "
        "is unknown"
    )


def _step_of(run_dir: Path, version: int) -> int | None:
    """The first learner step whose end had published ``version``."""
    for record in read_jsonl(run_dir / METRICS_FILE):
        if record.get("learner/version", 0) >= version:
            return int(record["step"])
    return None


def is_hub_id(name: str) -> bool:
    """Whether ``name`` reads as a Hugging Face Hub model id rather than a local folder.

    >>> is_hub_id("Qwen/Qwen2.5-0.5B-Instruct"), is_hub_id("/home/me/.cache/model")
    (True, False)
    """
    return bool(HUB_ID.match(name)) and not Path(name).exists()


def model_card(adapter: RunAdapter, merged: bool, name: str, dtype: str | None = None) -> str:
    """A Hugging Face model card (``README.md``) of an exported adapter or merged model.

    The front matter names ``base_model`` only when it is a Hub id: the Hub accepts nothing
    else there, so a local base model (the embedded policy) is named in the text.

    Args:
        adapter: The exported version.
        merged: Whether the folder holds the merged model rather than the adapter.
        name: How a reader loads it (the Hub repo, else the folder).
        dtype: The merged weights' dtype.
    """
    meta: dict[str, Any] = {}
    if is_hub_id(adapter.base_model):
        meta["base_model"] = adapter.base_model
    meta["library_name"] = "transformers" if merged else "peft"
    meta["pipeline_tag"] = "text-generation"
    tags = ["thoughtmdp", "reinforcement-learning", "lora", adapter.method, adapter.task]
    meta["tags"] = [t for t in tags if t] + (["merge"] if merged else [])
    base = f"`{adapter.base_model}`" + (
        " (the embedded tiny policy, built by `thoughtmdp warmstart`)" if adapter.embedded else ""
    )
    what = (
        f"{base} with a LoRA adapter merged into its weights ({dtype})"
        if merged
        else f"A LoRA adapter (PEFT) of {base}"
    )
    method = f"`{adapter.method}`: {adapter.method_detail}" if adapter.method else "not recorded"
    rows = [
        ("base model", base),
        ("method", method),
        ("task", f"`{adapter.task}`" if adapter.task else "not recorded"),
        ("adapter version", f"{adapter.version} of run `{adapter.run_dir}`"),
        ("learner steps", str(adapter.step) if adapter.step is not None else "not recorded"),
    ]
    lines = [
        f"---\n{yaml.safe_dump(meta, sort_keys=False)}---",
        f"\n# {Path(name).name}\n",
        f"{what}, trained with thoughtmdp: "
        "reinforcement learning from a verifiable reward, with resets to earlier reasoning "
        "steps for credit assignment.\n",
        "| | |\n|---|---|",
        *(f"| {key} | {value} |" for key, value in rows),
        *_heldout_lines(adapter),
        "\n## Use\n",
        _usage(adapter, merged, name),
    ]
    return "\n".join(lines) + "\n"


def _heldout_lines(adapter: RunAdapter) -> list[str]:
    held = adapter.heldout
    if not held:
        return []
    split = f"`{held['split']}` " if held.get("split") else ""
    lines = [
        "\n## Held-out evaluation\n",
        f"Greedy pass rate on {held['problems']} {split}problems, with its 95% Wilson interval"
        " (version 0 is the base model):\n",
        "| version | pass rate | 95% interval | sampled pass@1 |",
        "|---|---|---|---|",
    ]
    for version, rate in held["versions"].items():
        label = f"{version} (this model)" if version == adapter.version else str(version)
        low, high = rate["ci95"]
        sampled = rate.get("sampled")
        pass_at_1 = f"{sampled['pass_at_1']:.1%} ± {sampled['se']:.1%}" if sampled else ""
        lines.append(
            f"| {label} | {rate['pass_rate']:.1%} | [{low:.1%}, {high:.1%}] | {pass_at_1} |"
        )
    return lines


def _usage(adapter: RunAdapter, merged: bool, name: str) -> str:
    if merged:
        code = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{name}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{name}")'
        )
        return f"```python\n{code}\n```\n\nor `vllm serve {name}`."
    code = (
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM\n\n"
        f'base = AutoModelForCausalLM.from_pretrained("{adapter.base_model}")\n'
        f'model = PeftModel.from_pretrained(base, "{name}")'
    )
    return f"```python\n{code}\n```\n\nor vLLM's `LoRARequest` with this folder."


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A temporary sibling of ``out`` to write into, renamed to ``out`` once complete.

    Raises:
        ThoughtMDPError: If ``out`` exists and is not an empty folder.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ThoughtMDPError(f"{out} already exists and is not empty; choose another --out")
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    os.rename(tmp, out)


def write_adapter(adapter: RunAdapter, out: Path, name: str) -> Path:
    """Copy the adapter's PEFT files to ``out`` and write its model card there."""
    with staged(out) as tmp:
        for file in ADAPTER_FILES:
            shutil.copy2(adapter.folder / file, tmp / file)
        (tmp / CARD_FILE).write_text(model_card(adapter, merged=False, name=name))
    return Path(out)


def write_merged(adapter: RunAdapter, out: Path, name: str, dtype: str) -> Path:
    """Write the base model with the adapter merged in, in ``dtype``, with its tokenizer.

    The merge runs in float32 (``merge_and_unload``); the weights are cast afterwards.

    Raises:
        ThoughtMDPError: If the base model's folder is gone.
    """
    _check_base(adapter)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with staged(out) as tmp:
        base = AutoModelForCausalLM.from_pretrained(adapter.base_model, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, str(adapter.folder)).merge_and_unload()
        merged.to(getattr(torch, dtype)).save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(adapter.base_model).save_pretrained(str(tmp))
        (tmp / CARD_FILE).write_text(model_card(adapter, merged=True, name=name, dtype=dtype))
    return Path(out)


def _check_base(adapter: RunAdapter) -> None:
    if Path(adapter.base_model).is_dir() or is_hub_id(adapter.base_model):
        return
    hint = (
        "; `thoughtmdp warmstart` with the run's warmstart settings rebuilds it"
        if adapter.embedded
        else ""
    )
    raise ThoughtMDPError(f"base model folder {adapter.base_model} does not exist{hint}")


def push_to_hub(folder: Path, repo: str) -> str:
    """Upload ``folder`` to the Hugging Face Hub model repo ``repo`` (created if missing).

    Returns:
        The URL of the commit.

    Raises:
        ThoughtMDPError: Without a token, or when the Hub refuses or cannot be reached.
    """
    try:
        from huggingface_hub import HfApi, get_token
    except ImportError as exc:
        raise DependencyNotInstalled(
            "pushing needs huggingface_hub: pip install huggingface_hub"
        ) from exc
    if get_token() is None:
        raise ThoughtMDPError(
            "pushing to the Hugging Face Hub needs a token: run `hf auth login` or set HF_TOKEN"
        )
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo,
            repo_type="model",
            commit_message="Upload a model exported by thoughtmdp",
        )
    except Exception as exc:  # HTTP, network and offline errors differ by huggingface_hub version
        raise ThoughtMDPError(
            f"could not push {folder} to the Hugging Face Hub repo {repo}: {exc} "
            f"(the folder is complete; retry with `hf upload {repo} {folder}`)"
        ) from exc
    return str(commit.commit_url)
