"""Settings of where ``thoughtmdp train`` runs its learner and actors: CPU cores and GPUs.

Cores and GPUs are written as Linux lists (``0-3,8``, as ``taskset -c`` reads them); GPU
numbers count the GPUs this process sees (the entries of ``CUDA_VISIBLE_DEVICES`` when it
is set). An empty list is chosen by ``thoughtmdp train`` from what is left
(:mod:`thoughtmdp.training.placement`).

>>> parse_list("0-2,5")
[0, 1, 2, 5]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from thoughtmdp.errors import ConfigError


@dataclass(frozen=True)
class PlacementSettings:
    """Which cores and GPUs the learner and the actors get.

    A single number may be given as one (``placement.learner_cpus=0``).

    Attributes:
        enabled: Give each process its own cores (affinity, and as many threads) and GPUs
            (``CUDA_VISIBLE_DEVICES``); off: every process sees the whole machine.
        learner_cpus: Cores of the learner, shared by its ranks (empty: the first share of
            the cores, in proportion to the learner's ranks among all processes).
        actor_cpus: Cores of the actors, split among them in order (empty: the cores the
            learner does not have).
        learner_gpus: GPUs of the learner, one a rank (empty: the first
            ``learner.num_processes`` GPUs, when more are visible; else GPUs are shared).
        actor_gpus: GPUs of the actors, split among them in order (empty: the GPUs the
            learner does not have).
    """

    enabled: bool = True
    learner_cpus: str | int = ""
    actor_cpus: str | int = ""
    learner_gpus: str | int = ""
    actor_gpus: str | int = ""

    def __post_init__(self) -> None:
        for name in ("learner_cpus", "actor_cpus", "learner_gpus", "actor_gpus"):
            try:
                parse_list(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None


def parse_list(text: str | int) -> list[int]:
    """The numbers of a Linux list such as ``0-3,8`` (empty text: none).

    Raises:
        ValueError: For anything but comma-separated numbers and ranges, or a repeated number.
    """
    numbers: list[int] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        first, _, last = part.partition("-")
        if not first.isdigit() or not (last.isdigit() or not _):
            raise ValueError(f"expected numbers and ranges such as 0-3,8, got {text!r}")
        low, high = int(first), int(last or first)
        if high < low:
            raise ValueError(f"range {part} runs backwards in {text!r}")
        numbers.extend(range(low, high + 1))
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    if repeated:
        raise ValueError(f"{text!r} repeats {format_list(repeated)}")
    return numbers


def format_list(numbers: list[int]) -> str:
    """The shortest Linux list of ``numbers``, e.g. ``0-2,5``.

    >>> format_list([5, 0, 1, 2])
    '0-2,5'
    """
    parts: list[str] = []
    ordered = sorted(numbers)
    start = 0
    for k in range(1, len(ordered) + 1):
        if k == len(ordered) or ordered[k] != ordered[k - 1] + 1:
            low, high = ordered[start], ordered[k - 1]
            parts.append(str(low) if low == high else f"{low}-{high}")
            start = k
    return ",".join(parts)


@dataclass(frozen=True)
class RaySettings:
    """How ``launcher=ray`` places the learner and the actors as Ray actors.

    Attributes:
        learner_cpus: CPUs reserved for the learner (its threads too).
        learner_gpus: GPUs reserved for the learner (``learner.num_processes`` for one a rank).
        actor_cpus: CPUs reserved for each actor (its threads too).
        actor_gpus: GPUs reserved for each actor.
        learner_labels: Node labels the learner's node must carry (``ray start --labels``);
            empty: the node ``thoughtmdp train`` runs on, so ``run_dir`` is its own disk.
        actor_labels: Node labels each actor's node must carry (empty: any node).
        max_restarts: Restarts of each actor by Ray after it dies (-1: no limit).
    """

    learner_cpus: float = 1.0
    learner_gpus: float = 0.0
    actor_cpus: float = 1.0
    actor_gpus: float = 0.0
    learner_labels: dict[str, str] = field(default_factory=dict)
    actor_labels: dict[str, str] = field(default_factory=dict)
    max_restarts: int = -1

    def __post_init__(self) -> None:
        for name in ("learner_cpus", "learner_gpus", "actor_cpus", "actor_gpus"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected 0 or more, got {getattr(self, name)}")
        if self.max_restarts < -1:
            raise ConfigError(
                f"max_restarts: expected -1 (no limit) or more, got {self.max_restarts}"
            )
