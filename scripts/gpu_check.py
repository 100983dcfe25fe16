"""A prepared GPU check of the learner at the widths of Qwen2.5-14B and OLMo-3-7B.

Needs torch, transformers and PEFT; DeepSpeed and vLLM are used when they import. Each model
is randomly initialised with the real widths and vocabulary but only ``--layers`` decoder
layers, saved in bfloat16 and loaded through the learner's own path. The checks:

- ``learner-<model>``: two learner steps on 8 rollouts of ``--tokens`` tokens (shared
  prefixes, gradient checkpointing, LoRA r=64): dtypes and devices of the base weights and
  of the adapter, the published adapter's dtypes, peak memory (weights and activations) and
  step time;
- ``shared-prefix``: the shared-prefix forward against the plain one, log-probabilities and
  adapter gradients, with and without gradient checkpointing;
- ``zero3``: one rank under DeepSpeed ZeRO-3: a step, a checkpoint saved and loaded into a
  fresh engine, the same adapter and the same next loss;
- ``vllm``: the Qwen-width model in vLLM, greedy tokens with the base and with the adapter
  the learner published.

Usage, on one GPU (about 3-5 minutes; no network needed)::

    python scripts/gpu_check.py --out gpu_check.json

``--cpu --tiny`` runs the same checks on the CPU with tiny widths, in seconds (a dry run of
the script itself). The report is JSON: versions, device, and per check ``ok`` with its
figures, ``skipped`` with a reason, or ``error`` with the traceback's end. The exit status
is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Widths of the published configs; only the layer count is cut.
WIDTHS: dict[str, dict[str, Any]] = {
    "qwen2.5-14b": {
        "model_type": "qwen2",
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "vocab_size": 152_064,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
    },
    "olmo-3-7b": {
        "model_type": "olmo3",
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 100_278,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
    },
}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "vocab_size": 512}
CHECKS = ("learner", "shared-prefix", "zero3", "vllm")
TEMPERATURE = 0.7
LOGPROB_TOLERANCE = 0.05  # nats, bfloat16
GRADIENT_TOLERANCE = 0.05  # relative L2 error, bfloat16


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (a dry run)")
    parser.add_argument("--tiny", action="store_true", help="tiny widths (a dry run)")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of each model")
    parser.add_argument("--tokens", type=int, default=None, help="tokens per rollout")
    parser.add_argument("--checks", default=",".join(CHECKS), help="comma-separated subset")
    parser.add_argument("--models", default=",".join(WIDTHS), help="comma-separated subset")
    args = parser.parse_args()
    args.device = "cpu" if args.cpu else "cuda"
    args.tokens = args.tokens or (64 if args.tiny else 4096)
    args.lora_rank = 8 if args.tiny else 64
    for option, known in (("checks", CHECKS), ("models", tuple(WIDTHS))):
        unknown = set(getattr(args, option).split(",")) - set(known)
        if unknown:
            parser.error(f"--{option}: unknown {sorted(unknown)}; choose from {', '.join(known)}")
    return args


def build_model(name: str, folder: Path, args: argparse.Namespace) -> Path:
    """A randomly initialised ``name`` with ``args.layers`` layers, saved in bfloat16."""
    from transformers import AutoConfig, AutoModelForCausalLM

    widths = dict(WIDTHS[name])
    if args.tiny:
        widths.update(TINY, num_key_value_heads=2 if widths["model_type"] == "qwen2" else 4)
    model_type = widths.pop("model_type")
    config = AutoConfig.for_model(model_type, num_hidden_layers=args.layers, **widths)
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    path = folder / name
    model.save_pretrained(path)
    return path


def learner_config(model_dir: Path, args: argparse.Namespace, **changes: Any) -> Any:
    """The learner settings of the checks: bfloat16, shared prefixes, checkpointing."""
    from thoughtmdp.settings.learner import LearnerConfig, LoraSettings

    settings: dict[str, Any] = {
        "model": str(model_dir),
        "run_dir": model_dir.parent / f"run-{model_dir.name}",
        "dtype": "bfloat16",
        "device": args.device,
        "gradient_checkpointing": True,
        "shared_prefix": True,
        "prompts_per_step": 1,
        "prompts_per_minibatch": 1,
        "rollouts_per_microbatch": 4,
        "lora": LoraSettings(rank=args.lora_rank, alpha=args.lora_rank),
    }
    settings.update(changes)
    return LearnerConfig(**settings)


def episode(vocab_size: int, args: argparse.Namespace) -> Any:
    """One episode of 8 rollouts (a base group and a reset group) of about ``args.tokens``."""
    from thoughtmdp.learners.synthetic import random_episode

    prompt = args.tokens // 8
    return random_episode(
        np.random.default_rng(0),
        "p0",
        vocab_size,
        prompt_tokens=prompt,
        thoughts=8,
        thought_tokens=(args.tokens - prompt) // 8,
    )


def synchronize(device: str) -> None:
    """Wait for the device's queued work (for timings)."""
    if device == "cuda":
        torch.cuda.synchronize()


def memory_gib(device: str, peak: bool = False) -> float | None:
    """Allocated (or peak allocated) device memory in GiB; ``None`` on the CPU."""
    if device != "cuda":
        return None
    used = torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()
    return round(used / 2**30, 3)


def dtypes_and_devices(model: torch.nn.Module) -> dict[str, list[str]]:
    """The distinct dtypes and devices of the base weights and of the adapter's."""
    groups: dict[str, set[str]] = {k: set() for k in ("base", "lora", "devices")}
    for name, parameter in model.named_parameters():
        groups["lora" if "lora_" in name else "base"].add(str(parameter.dtype))
        groups["devices"].add(parameter.device.type)
    return {key: sorted(values) for key, values in groups.items()}


def published_dtypes(trainer: Any, folder: Path) -> list[str]:
    """Publish the adapter as the learner does; the dtypes of the file actors load."""
    from safetensors import safe_open

    from thoughtmdp.learners.publish import AdapterPublisher

    publisher = AdapterPublisher(folder, dtype=torch.bfloat16)  # the serving dtype
    publisher.publish(trainer.engine.model, trainer.engine.adapter_state(), 1)
    with safe_open(str(publisher.folder(1) / "adapter_model.safetensors"), "pt") as weights:
        return sorted({str(weights.get_slice(k).get_dtype()) for k in weights.keys()})  # noqa: SIM118


def learner_check(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Two learner steps at full width: dtypes, devices, memory and time."""
    from thoughtmdp.learners import build_trainer

    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = build_trainer(learner_config(model_dir, args))
    weights = memory_gib(args.device)
    batch = trainer.pad([episode(trainer.engine.model.config.vocab_size, args)])
    times, metrics = [], {}
    for _ in range(1 if args.tiny else 2):  # the first step warms up kernels and allocator
        start = time.perf_counter()
        metrics = trainer.step(batch)
        synchronize(args.device)
        times.append(time.perf_counter() - start)
    found = dtypes_and_devices(trainer.engine.model)
    peak = memory_gib(args.device, peak=True)
    tokens = metrics["perf/total_num_tokens"]
    report = {
        **found,
        "published": published_dtypes(trainer, model_dir.parent / f"adapters-{model_dir.name}"),
        "weights_gib": weights,
        "peak_gib": peak,
        "activation_peak_gib": None if peak is None else round(peak - (weights or 0.0), 3),
        "step_s": [round(t, 3) for t in times],
        "tokens": tokens,
        "tokens_per_s": round(tokens / times[-1], 1),
        "pg_loss": metrics["actor/pg_loss"],
        "grad_norm": metrics["actor/grad_norm"],
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }
    finite = math.isfinite(report["pg_loss"]) and math.isfinite(report["grad_norm"])
    precision = found["base"] == ["torch.bfloat16"] and found["lora"] == ["torch.float32"]
    served = report["published"] == ["BF16"]
    report["ok"] = precision and served and found["devices"] == [args.device] and finite
    return report


def group_ids(vocab_size: int, prefix: int, suffix: int, rows: int = 4) -> torch.Tensor:
    """``rows`` rollouts sharing their first ``prefix`` tokens."""
    generator = torch.Generator().manual_seed(0)
    shared = torch.randint(1, vocab_size, (1, prefix), generator=generator).expand(rows, -1)
    tails = torch.randint(1, vocab_size, (rows, suffix), generator=generator)
    return torch.cat([shared, tails], dim=1)


def scores_and_gradients(model: Any, forward: Callable[[], Any]) -> tuple[torch.Tensor, list]:
    """Log-probabilities of ``forward()`` and the adapter's gradients of their sum."""
    model.zero_grad(set_to_none=True)
    logprobs = forward().logprobs
    logprobs.sum().backward()
    grads = [p.grad.float().clone() for p in model.parameters() if p.requires_grad]
    return logprobs.detach().float(), grads


def relative_error(grads: list, reference: list) -> float:
    """``||g - g_ref|| / ||g_ref||`` over all adapter parameters."""
    pairs = zip(grads, reference, strict=True)
    difference = math.sqrt(sum(float((g - r).square().sum()) for g, r in pairs))
    norm = math.sqrt(sum(float(r.square().sum()) for r in reference))
    return difference / max(norm, 1e-30)


def shared_prefix_check(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Shared-prefix against plain log-probabilities and gradients, checkpointing on and off."""
    from thoughtmdp.learners.model.policy import cache_argument, load_policy, token_scores
    from thoughtmdp.learners.model.shared_prefix import shared_prefix_scores

    model = load_policy(learner_config(model_dir, args, gradient_checkpointing=False))
    model.to(args.device)
    with torch.no_grad():  # PEFT starts B at 0, which leaves A without gradient
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.02)
    prefix = args.tokens // 2
    ids = group_ids(model.config.vocab_size, prefix, args.tokens - prefix).to(args.device)
    cache = cache_argument(model)
    report: dict[str, Any] = {"prefix": prefix, "rows": int(ids.shape[0])}
    baseline: list | None = None
    for checkpointing in (False, True):
        if checkpointing:
            options = {"use_reentrant": False}
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
        plain, plain_grads = scores_and_gradients(
            model, lambda: token_scores(model, ids, TEMPERATURE, prefix)
        )
        shared, shared_grads = scores_and_gradients(
            model, lambda: shared_prefix_scores(model, ids, prefix, TEMPERATURE, cache)
        )
        baseline = baseline or plain_grads
        key = "checkpointing" if checkpointing else "plain"
        report[key] = {
            "logprob_max_abs_diff": float((plain - shared).abs().max()),
            "gradient_rel_error": relative_error(shared_grads, plain_grads),
            "gradient_rel_error_vs_no_checkpointing": relative_error(plain_grads, baseline),
        }
    report["ok"] = all(
        part["logprob_max_abs_diff"] < LOGPROB_TOLERANCE
        and part["gradient_rel_error"] < GRADIENT_TOLERANCE
        and part["gradient_rel_error_vs_no_checkpointing"] < GRADIENT_TOLERANCE
        for part in (report["plain"], report["checkpointing"])
    )
    return report


@contextlib.contextmanager
def one_rank() -> Iterator[None]:
    """The environment of a one-rank launch (rank 0 of 1 on a free local port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    names = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
    names.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def zero3_check(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One rank under ZeRO-3: step, checkpoint, load into a fresh engine, compare."""
    from thoughtmdp.learners import build_trainer
    from thoughtmdp.learners.checkpoint import load_checkpoint, save_checkpoint
    from thoughtmdp.settings.deepspeed import DeepSpeedSettings

    config = learner_config(model_dir, args, deepspeed=DeepSpeedSettings(zero_stage=3))
    with one_rank():
        trainer = build_trainer(config)
        batch = trainer.pad([episode(trainer.engine.model.config.vocab_size, args)])
        start = time.perf_counter()
        trainer.step(batch)
        step_s = time.perf_counter() - start
        path = save_checkpoint(model_dir.parent / "zero3", 1, trainer.engine, {"step": 1}, keep=1)
        resumed = build_trainer(config)
        load_checkpoint(path, resumed.engine)
        saved, loaded = trainer.engine.adapter_state(), resumed.engine.adapter_state()
        same = saved.keys() == loaded.keys()
        same = same and all(torch.equal(saved[k], loaded[k]) for k in saved)
        losses = [t.step(batch)["actor/pg_loss"] for t in (trainer, resumed)]
    return {
        "ok": same and losses[0] == losses[1],
        "adapter_restored": same,
        "next_losses": losses,
        "step_s": round(step_s, 3),
        "peak_gib": memory_gib(args.device, peak=True),
    }


def vllm_check(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Greedy tokens from vLLM with the base model and with the learner's published adapter."""
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    adapter = model_dir.parent / f"adapters-{model_dir.name}" / "v000001"
    if not adapter.is_dir():
        return {"skipped": f"no published adapter at {adapter} (run the learner check first)"}
    torch.cuda.empty_cache()
    start = time.perf_counter()
    llm = LLM(
        model=str(model_dir),
        skip_tokenizer_init=True,
        enable_lora=True,
        max_lora_rank=args.lora_rank,
        enforce_eager=True,
        dtype="bfloat16",
        gpu_memory_utilization=0.3,
        max_model_len=args.tokens,
    )
    started_s = time.perf_counter() - start
    prompt = {"prompt_token_ids": list(range(1, 65))}
    sampling = SamplingParams(max_tokens=8, temperature=0.0, detokenize=False)
    base = llm.generate([prompt], sampling)[0].outputs[0].token_ids
    lora = LoRARequest("v1", 1, str(adapter))
    tuned = llm.generate([prompt], sampling, lora_request=lora)[0].outputs[0].token_ids
    return {
        "ok": len(base) == 8 and len(tuned) == 8,
        "engine_start_s": round(started_s, 1),
        "base_tokens": list(base),
        "adapter_tokens": list(tuned),
    }


def run_check(report: dict[str, Any], name: str, check: Callable[[], dict[str, Any]]) -> None:
    """Run one check into ``report["checks"][name]``; a failure is recorded, not raised."""
    start = time.perf_counter()
    try:
        result = check()
    except Exception as error:  # every check reports, whatever fails
        tail = traceback.format_exc().strip().splitlines()[-12:]
        result = {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": tail}
    result["seconds"] = round(time.perf_counter() - start, 1)
    report["checks"][name] = result
    print(name, json.dumps(result, default=str)[:400], flush=True)


def versions() -> dict[str, str | None]:
    """Versions of the packages the checks use (``None``: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "deepspeed", "vllm", "thoughtmdp"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def importable(module: str) -> str | None:
    """Why ``module`` cannot be used (``None`` when it imports)."""
    try:
        __import__(module)
    except Exception as error:  # an optional package may fail in any way
        return f"{module} does not import: {type(error).__name__}: {error}"
    return None


def main() -> int:
    """Run the selected checks and write the report; 1 when one failed."""
    args = arguments()
    if args.cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; pass --cpu --tiny for a dry run")
    selected = args.checks.split(",")
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor()
    report: dict[str, Any] = {"device": device, "args": vars(args), "versions": versions()}
    report["checks"] = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        folder = Path(tmp)
        models = {name: build_model(name, folder, args) for name in args.models.split(",")}
        if "learner" in selected:
            for name, path in models.items():
                run_check(report, f"learner-{name}", lambda p=path: learner_check(p, args))
        first, last = next(iter(models.values())), list(models.values())[-1]
        if "shared-prefix" in selected:
            run_check(report, "shared-prefix", lambda: shared_prefix_check(first, args))
        optional = {
            "zero3": ("deepspeed", lambda: zero3_check(last, args)),
            "vllm": ("vllm", lambda: vllm_check(first, args)),
        }
        for name, (module, check) in optional.items():
            if name in selected:
                reason = importable(module) if name == "zero3" or not args.cpu else "CPU run"
                skip = {"skipped": reason}
                run_check(report, name, (lambda s=skip: s) if reason else check)
    results = report["checks"].values()
    report["ok"] = all(r.get("ok", True) for r in results)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"{'all checks passed' if report['ok'] else 'a check FAILED'}; report: {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
