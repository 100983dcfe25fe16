"""The wheel holds every package below the four mapped folders and the shipped data files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"thoughtmdp": "thoughtmdp", "envs": "thoughtmdp/envs", "agents": "thoughtmdp/agents",
           "learners": "thoughtmdp/learners"}  # fmt: skip


LOCAL_ONLY = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "results")


def local_only(folder: str, names: list[str]) -> set[str]:
    """What a build must not see: caches, old builds, and run folders at the root."""
    skipped = shutil.ignore_patterns(*LOCAL_ONLY)(folder, names)
    return skipped | ({"runs"} if Path(folder) == ROOT else set())


def packages_on_disk() -> set[str]:
    """Each package folder, as the path it takes inside the wheel."""
    found = set()
    for folder, inside in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            found.add(str(Path(inside) / init.parent.relative_to(ROOT / folder)))
    return {p.removesuffix("/.") for p in found}


@pytest.mark.slow
def test_wheel_holds_every_subpackage_and_the_shipped_configs(tmp_path):
    # a copy, so that no build/ folder left in the checkout can supply stale files
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=local_only)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("thoughtmdp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = {str(Path(n).parent) for n in names if n.endswith("/__init__.py")}
    assert packages_on_disk() <= in_wheel
    assert "thoughtmdp/envs/sandbox/runner.py" in names
    assert "thoughtmdp/configs/paper/table5.yaml" in names
    assert "thoughtmdp/configs/gpu/srpo-math-qwen2.5-1.5b.yaml" in names
    assert "thoughtmdp/suites/paper.yaml" in names
