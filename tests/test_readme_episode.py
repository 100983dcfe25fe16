"""The README's episode example is reproducible: two runs build the same episode."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def episode_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    return next(block for block in blocks if "EpisodeBuilder(" in block)


def run_example(block: str) -> tuple[str, Any]:
    """What the example prints, and every chain of its episode with its advantage."""
    namespace: dict[str, Any] = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block, str(README), "exec"), namespace)
    chains = [
        (group.kind, group.reset_index, advantage, [t.text for t in trajectory.all_thoughts])
        for group in namespace["episode"].groups
        for trajectory, advantage in zip(group.trajectories, group.advantages, strict=True)
    ]
    return printed.getvalue(), chains


def test_the_readme_episode_example_builds_the_same_episode_every_run():
    block = episode_example()
    first, second = run_example(block), run_example(block)
    assert first == second
    kinds = [kind for kind, *_ in first[1]]
    assert kinds == ["base"] * 4 + ["reset"] * 4  # 1x4: a failed seed chain got its reset
