"""The prepared GPU check runs end to end as a dry run on the CPU (tiny widths)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "gpu_check.py"


def test_gpu_check_dry_run_on_cpu_writes_a_passing_report(tmp_path):
    out = tmp_path / "report.json"
    command = [sys.executable, str(SCRIPT), "--cpu", "--tiny", "--layers", "1"]
    command += ["--checks", "learner,shared-prefix,vllm", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert set(checks) == {"learner-qwen2.5-14b", "learner-olmo-3-7b", "shared-prefix", "vllm"}
    assert report["ok"] and report["versions"]["torch"]
    for name in ("learner-qwen2.5-14b", "learner-olmo-3-7b"):
        learner = checks[name]
        assert learner["ok"], learner
        assert learner["base"] == ["torch.bfloat16"] and learner["devices"] == ["cpu"]
        assert learner["tokens"] > 0 and learner["step_s"][0] > 0
        assert learner["lora"] == ["torch.float32"]  # fp32 master weights
        assert learner["published"] == ["BF16"]  # the adapter file actors load, as served
    shared = checks["shared-prefix"]
    for part in ("plain", "checkpointing"):
        assert shared[part]["logprob_max_abs_diff"] < 0.05, shared
        assert 0 <= shared[part]["gradient_rel_error"] < 0.05, shared
    assert checks["vllm"] == {"skipped": "CPU run", "seconds": 0.0}
