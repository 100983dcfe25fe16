"""Plots of one or more run folders (matplotlib, imported only when drawing).

Each function draws one figure from the run files and returns its path, or ``None`` when no
run has the data (a GRPO run has no resets, a task without a step oracle no correction
rates). Several runs are overlaid, labelled by their method and folder name.

| file | what | paper |
|---|---|---|
| ``heldout.png`` | held-out pass rate (T=0) vs samples and wall-clock | Fig. 3 left |
| ``training_reward.png`` | base-group reward vs samples and wall-clock | |
| ``reset_positions.png`` | ``h*/H_s`` histogram beside uniform resets on the same seeds | Fig. 4a |
| ``correction.png`` | reset-group pass rate from clean vs erroneous prefixes (oracle) | Fig. 4d |
| ``reset_pass_rate.png`` | reset-group pass rate over steps | Fig. 7 right |
| ``signal_ratio.png`` | gradient signal per token, reset over base rollouts | Fig. 7 left |
| ``signal_map.png`` | per-thought gradient signal of one logged episode | Fig. 3 right |
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from thoughtmdp.runs.files import (
    EPISODES_FILE,
    METRICS_FILE,
    SIGNAL_MAPS_FILE,
    SUMMARY_FILE,
    read_heldout,
    read_jsonl,
    step_axes,
)
from thoughtmdp.runs.stats import wilson_interval

POSITION_BINS = 10
SMOOTH = 10  # steps in the moving average of noisy per-step curves


class Run:
    """One run folder's files, read once.

    Args:
        folder: The run folder.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.metrics = read_jsonl(self.folder / METRICS_FILE)
        self.episodes = read_jsonl(self.folder / EPISODES_FILE)
        self.signal_maps = read_jsonl(self.folder / SIGNAL_MAPS_FILE)
        self.heldout = read_heldout(self.folder)
        self.axes = step_axes(self.metrics)
        summary = self.folder / SUMMARY_FILE
        method = json.loads(summary.read_text()).get("method") if summary.exists() else None
        self.label = f"{method} ({self.folder.name})" if method else self.folder.name

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """Steps and values of a per-step metric (steps without it are skipped)."""
        steps = [int(r["step"]) for r in self.metrics if key in r]
        return steps, [float(r[key]) for r in self.metrics if key in r]

    def resets(self) -> list[dict[str, Any]]:
        """Every reset record that produced a reset group."""
        return [r for e in self.episodes for r in e["resets"] if r["reset_index"] is not None]


def plot_runs(folders: Sequence[Path], out: Path) -> list[Path]:
    """Draw every plot the runs have data for into ``out``; returns the files written.

    Raises:
        FileNotFoundError: If a folder has no ``metrics.jsonl`` (it is not a run folder).
    """
    import matplotlib

    matplotlib.use("Agg")
    runs = []
    for folder in folders:
        if not (Path(folder) / METRICS_FILE).exists():
            raise FileNotFoundError(f"{folder} is not a run folder: it has no {METRICS_FILE}")
        runs.append(Run(folder))
    out.mkdir(parents=True, exist_ok=True)
    drawn = [plot(runs, out) for plot in PLOTS]
    return [path for path in drawn if path is not None]


def _figure(columns: int = 1) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, columns, figsize=(5.5 * columns, 4), squeeze=False)
    return fig, axes[0]


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def heldout_curves(runs: Sequence[Run], out: Path) -> Path | None:
    """Held-out pass rate against samples generated and against wall-clock."""
    runs = [r for r in runs if r.heldout]
    if not runs:
        return None
    fig, (by_samples, by_time) = _figure(2)
    for run in runs:
        versions = [v for v in sorted(run.heldout) if v in run.axes]
        rates = [_pass_rate(run.heldout[v]) for v in versions]
        samples = [run.axes[v][0] for v in versions]
        minutes = [run.axes[v][1] / 60 for v in versions]
        by_samples.plot(samples, rates, marker="o", label=run.label)
        by_time.plot(minutes, rates, marker="o", label=run.label)
    _labels(by_samples, "rollouts generated", "held-out pass rate (T=0)")
    _labels(by_time, "training wall-clock (minutes)", "held-out pass rate (T=0)")
    by_samples.legend(fontsize=8)
    return _save(fig, out / "heldout.png")


def _pass_rate(record: dict[str, Any]) -> float:
    rewards: list[float] = record["rewards"]
    return sum(r >= 1.0 for r in rewards) / max(len(rewards), 1)


def training_reward(runs: Sequence[Run], out: Path) -> Path | None:
    """Base-group reward (moving average) against samples and against wall-clock."""
    if not any(run.series("critic/score/mean")[0] for run in runs):
        return None
    fig, (by_samples, by_time) = _figure(2)
    for run in runs:
        steps, values = run.series("critic/score/mean")
        smooth = _moving_average(values)
        by_samples.plot([run.axes[s][0] for s in steps], smooth, label=run.label)
        by_time.plot([run.axes[s][1] / 60 for s in steps], smooth, label=run.label)
    _labels(by_samples, "rollouts generated", f"training reward ({SMOOTH}-step mean)")
    _labels(by_time, "training wall-clock (minutes)", f"training reward ({SMOOTH}-step mean)")
    by_samples.legend(fontsize=8)
    return _save(fig, out / "training_reward.png")


def reset_positions(runs: Sequence[Run], out: Path) -> Path | None:
    """Where resets land (``h*/H_s``), beside uniform resets on the same seed chains."""
    runs = [r for r in runs if r.resets()]
    if not runs:
        return None
    fig, (axis,) = _figure()
    edges = [k / POSITION_BINS for k in range(POSITION_BINS + 1)]
    for run in runs:
        resets = run.resets()
        positions = [r["reset_index"] / r["seed_length"] for r in resets]
        axis.hist(
            positions, bins=edges, density=True, histtype="step", linewidth=2, label=run.label
        )
    uniform, weights = zip(*uniform_weights(runs[0].resets()), strict=True)
    axis.hist(
        uniform,
        bins=edges,
        weights=weights,
        density=True,
        histtype="stepfilled",
        alpha=0.25,
        color="gray",
        label="uniform resets, same chains",
    )
    _labels(axis, "reset position h*/H_s", "density")
    axis.legend(fontsize=8)
    return _save(fig, out / "reset_positions.png")


def uniform_weights(resets: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """Every position ``h/H_s`` a uniform reset could pick on these chains, with its chance.

    >>> uniform_weights([{"seed_length": 2}])
    [(0.5, 0.5), (1.0, 0.5)]
    """
    return [
        (h / r["seed_length"], 1 / r["seed_length"])
        for r in resets
        for h in range(1, r["seed_length"] + 1)
    ]


def correction_rates(runs: Sequence[Run], out: Path) -> Path | None:
    """Reset-group pass rate from clean and from erroneous prefixes, with Wilson intervals."""
    rows = []
    for run in runs:
        judged = [r for r in run.resets() if r["clean"] is not None]
        for kind, clean in (("clean", True), ("erroneous", False)):
            rewards = [x for r in judged if r["clean"] is clean for x in r["suffix_rewards"]]
            if rewards:
                wins = sum(x >= 1.0 for x in rewards)
                rows.append(
                    (
                        f"{run.label}\n{kind}",
                        wins / len(rewards),
                        wilson_interval(wins, len(rewards)),
                    )
                )
    if not rows:
        return None
    fig, (axis,) = _figure()
    names, rates, intervals = zip(*rows, strict=True)
    errors = [
        [r - low for r, (low, _) in zip(rates, intervals, strict=True)],
        [high - r for r, (_, high) in zip(rates, intervals, strict=True)],
    ]
    axis.bar(
        range(len(rows)),
        rates,
        yerr=errors,
        capsize=4,
        color=["tab:green" if "clean" in n else "tab:red" for n in names],
    )
    axis.set_xticks(range(len(rows)), names, fontsize=7)
    _labels(axis, "", "reset-group pass rate (Wilson 95%)")
    return _save(fig, out / "correction.png")


def reset_pass_rate(runs: Sequence[Run], out: Path) -> Path | None:
    """Reset-group pass rate over training steps."""
    return _step_curve(
        runs, "reset/suffix_pass_rate", "reset-group pass rate", out / "reset_pass_rate.png"
    )


def signal_ratio(runs: Sequence[Run], out: Path) -> Path | None:
    """Mean per-token gradient signal of reset rollouts over that of base rollouts."""
    return _step_curve(
        runs, "signal/reset_to_base", "gradient signal, reset / base", out / "signal_ratio.png"
    )


def _step_curve(runs: Sequence[Run], key: str, label: str, path: Path) -> Path | None:
    runs = [r for r in runs if r.series(key)[0]]
    if not runs:
        return None
    fig, (axis,) = _figure()
    for run in runs:
        steps, values = run.series(key)
        axis.plot(steps, values, alpha=0.3)
        axis.plot(steps, _moving_average(values), label=run.label, color=axis.lines[-1].get_color())
    _labels(axis, "learner step", f"{label} ({SMOOTH}-step mean)")
    axis.legend(fontsize=8)
    return _save(fig, path)


def signal_map(runs: Sequence[Run], out: Path) -> Path | None:
    """Per-thought gradient signal of the last logged episode of the first run that has one."""
    run = next((r for r in runs if r.signal_maps), None)
    if run is None:
        return None
    import numpy as np

    logged = run.signal_maps[-1]
    rollouts = sorted(logged["rollouts"], key=lambda r: r["kind"] != "reset")  # reset on top
    width = max(len(r["thoughts"]) for r in rollouts)
    grid = np.full((len(rollouts), width), np.nan)
    masked = np.zeros_like(grid, dtype=bool)
    for i, rollout in enumerate(rollouts):
        for j, thought in enumerate(rollout["thoughts"]):
            masked[i, j] = thought["masked"]
            if thought["signal"] is not None:
                grid[i, j] = thought["signal"]
    fig, (axis,) = _figure()
    axis.imshow(np.where(masked, 1.0, np.nan), cmap="Greys", vmin=0, vmax=3, aspect="auto")
    image = axis.imshow(grid, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=axis, label="mean g_it over the thought")
    axis.set_yticks(
        range(len(rollouts)),
        [f"{r['kind']} r={r['reward']:.0f} A={r['advantage']:+.2f}" for r in rollouts],
        fontsize=7,
    )
    _labels(axis, "thought", "")
    axis.set_title(
        f"{logged['problem_id']}, step {logged['step']} (gray: masked prefix)", fontsize=9
    )
    return _save(fig, out / "signal_map.png")


def _moving_average(values: Sequence[float], window: int = SMOOTH) -> list[float]:
    """Trailing mean over up to ``window`` values.

    >>> _moving_average([1.0, 3.0, 5.0], window=2)
    [1.0, 2.0, 4.0]
    """
    out = []
    for i in range(len(values)):
        part = values[max(0, i - window + 1) : i + 1]
        out.append(sum(part) / len(part))
    return out


def _labels(axis: Any, x: str, y: str) -> None:
    axis.set_xlabel(x)
    axis.set_ylabel(y)
    axis.grid(alpha=0.3)


PLOTS: tuple[Callable[[Sequence[Run], Path], Path | None], ...] = (
    heldout_curves,
    training_reward,
    reset_positions,
    correction_rates,
    reset_pass_rate,
    signal_ratio,
    signal_map,
)
"""Every plot :func:`plot_runs` draws."""
