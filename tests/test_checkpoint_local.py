"""Checkpoints of a two-rank DeepSpeed learner whose ranks do not share ``run_dir``."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from test_deepspeed import settings, start_ranks

pytest.importorskip("deepspeed", reason='install with: pip install "thoughtmdp[deepspeed]"')
pytestmark = pytest.mark.slow

# Each rank writes into its own folder: steps 1-4 with checkpoints after 3 and 4; rank 1's
# step 4 is then removed (as if it was killed between the two commits). A fresh engine on
# each rank resumes from the step both hold and redoes step 4: it must match the original.
WORKER = textwrap.dedent(
    """
    import json, shutil, sys
    from pathlib import Path
    import torch.distributed as dist
    from safetensors.torch import save_file
    from thoughtmdp.learners import build_trainer
    from thoughtmdp.learners.checkpoint import agreed_checkpoint, load_checkpoint, save_checkpoint
    from thoughtmdp.settings.learner import LearnerConfig
    from thoughtmdp.settings.convert import from_dict
    from test_deepspeed import batch

    config = from_dict(LearnerConfig, json.loads(sys.argv[1]))
    trainer = build_trainer(config)
    rank = trainer.engine.rank
    run_dir = Path(sys.argv[2]) / f"rank{rank}"
    for step in (1, 2, 3):
        trainer.step(trainer.pad(batch()))
    save_checkpoint(run_dir, 3, trainer.engine, {"step": 3}, keep=2)
    trainer.step(trainer.pad(batch()))
    save_checkpoint(run_dir, 4, trainer.engine, {"step": 4}, keep=2)
    if rank == 1:
        shutil.rmtree(run_dir / "checkpoints" / "step-00000004")
    dist.barrier()
    resumed = build_trainer(config)
    path = agreed_checkpoint(run_dir, resumed.engine)
    state = load_checkpoint(path, resumed.engine)
    resumed.step(resumed.pad(batch()))
    save_file(trainer.engine.adapter_state(), str(run_dir / "original.safetensors"))
    save_file(resumed.engine.adapter_state(), str(run_dir / "resumed.safetensors"))
    files = sorted(p.name for p in (path / "engine").rglob("*") if p.is_file())
    (run_dir / "report.json").write_text(json.dumps({"step": state["step"], "files": files}))
    """
)


def test_ranks_with_their_own_folders_checkpoint_and_resume_the_same_step(tiny_model_dir, tmp_path):
    arguments = [json.dumps(settings(tiny_model_dir, zero_stage=2)), str(tmp_path)]
    ranks = start_ranks(WORKER, arguments, tmp_path)
    codes = [r.wait(timeout=500) for r in ranks]
    assert codes == [0, 0], (tmp_path / "rank1.log").read_text()[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}" / "report.json").read_text()) for r in (0, 1)]
    assert [r["step"] for r in reports] == [3, 3]  # the step both hold, on both
    assert reports[0]["files"] == reports[1]["files"]  # each folder holds the whole checkpoint
    assert sum("optim_states" in name for name in reports[0]["files"]) == 2
    for rank in (0, 1):
        folder = tmp_path / f"rank{rank}"
        original = load_file(str(folder / "original.safetensors"))
        resumed = load_file(str(folder / "resumed.safetensors"))
        for name, value in original.items():
            assert torch.allclose(resumed[name], value, atol=1e-7), name
