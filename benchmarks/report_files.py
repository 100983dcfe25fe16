"""What every benchmark writes: a JSON report, its Markdown table and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def write_report(folder: Path, name: str, report: dict[str, Any], table: str) -> None:
    """``NAME.json`` and ``NAME.md`` in ``folder`` (created if missing); the table is printed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / f"{name}.md").write_text(table)
    print(table)


def save_figure(fig: Any, path: Path) -> None:
    """Lay out a matplotlib figure, write it as a PNG and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
