"""Where a run's processes go: each gets its own CPU cores and GPUs on this host.

The cores are those this process may run on (``os.sched_getaffinity(0)``); the GPUs are those
it sees (``CUDA_VISIBLE_DEVICES``, else the driver's list in ``/proc/driver/nvidia/gpus``).
By default the learner takes the first share of the cores, in proportion to its ranks among
all processes (one of two cores beside one actor), and the actors split the rest in order;
with more GPUs than learner ranks, the learner takes the first GPU of each rank and the actors
split the rest. Fewer cores (or GPUs) than actors are shared round-robin. Lists given in
``placement`` are checked: a core or GPU that is not there, or one given to both the learner
and the actors, is refused with the key to fix before anything starts.

>>> slot = Slot("actor-0", cpus=[1], gpus=["3"])
>>> slot.describe()
'actor-0: cores 1, GPUs 3, 1 thread'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from thoughtmdp.errors import ConfigError
from thoughtmdp.settings.placement import PlacementSettings, format_list, parse_list

GPU_ENV = "CUDA_VISIBLE_DEVICES"
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


@dataclass(frozen=True)
class Slot:
    """The devices of one process.

    Attributes:
        name: ``learner`` or the actor's name.
        cpus: Cores it is pinned to (``None``: not pinned).
        gpus: Its ``CUDA_VISIBLE_DEVICES`` entries (``None``: inherited).
        ranks: Processes sharing the cores (the learner's ranks).
    """

    name: str
    cpus: list[int] | None = None
    gpus: list[str] | None = None
    ranks: int = 1

    @property
    def threads(self) -> int | None:
        """Threads of each of its processes: its cores shared by its ranks."""
        return None if self.cpus is None else max(1, len(self.cpus) // self.ranks)

    def describe(self) -> str:
        """One line: the cores, the GPUs and the threads."""
        cores = "all cores" if self.cpus is None else f"cores {format_list(self.cpus)}"
        gpus = "GPUs inherited" if self.gpus is None else f"GPUs {','.join(self.gpus) or '-'}"
        threads = self.threads
        count = "" if threads is None else f", {threads} thread{'s' * (threads != 1)}"
        return f"{self.name}: {cores}, {gpus}{count}"


@dataclass(frozen=True)
class Placement:
    """The learner's slot and one slot per actor."""

    learner: Slot
    actors: list[Slot]


def visible_gpus() -> list[str]:
    """The GPUs this process sees, as ``CUDA_VISIBLE_DEVICES`` entries."""
    if GPU_ENV in os.environ:
        return [g.strip() for g in os.environ[GPU_ENV].split(",") if g.strip()]
    count = len(list(NVIDIA_GPUS.iterdir())) if NVIDIA_GPUS.is_dir() else 0
    return [str(k) for k in range(count)]


def plan(settings: PlacementSettings, ranks: int, actors: int) -> Placement:
    """Place the learner's ``ranks`` and ``actors`` actors on this host.

    Raises:
        ConfigError: One line naming the ``placement`` key that asks for a missing or
            doubly given core or GPU.
    """
    names = [f"actor-{k}" for k in range(actors)]
    if not settings.enabled:
        return Placement(Slot("learner", ranks=ranks), [Slot(n) for n in names])
    cores = sorted(os.sched_getaffinity(0))
    learner_cpus, actor_cpus = _split(
        settings.learner_cpus, settings.actor_cpus, cores, ranks, actors, "cpus"
    )
    gpus = visible_gpus()
    learner_gpus: list[int] | None = None
    actor_gpus: list[int] | None = None
    if f"{settings.learner_gpus}{settings.actor_gpus}" or len(gpus) > ranks:
        indices = list(range(len(gpus)))
        learner_gpus, actor_gpus = _split(
            settings.learner_gpus, settings.actor_gpus, indices, ranks, actors, "gpus"
        )
    shares = _shares(actor_cpus, actors)
    gpu_shares = _shares(actor_gpus, actors) if actor_gpus is not None else [None] * actors
    return Placement(
        Slot("learner", learner_cpus, _entries(gpus, learner_gpus), ranks),
        [
            Slot(name, cpus, _entries(gpus, own))
            for name, cpus, own in zip(names, shares, gpu_shares, strict=True)
        ],
    )


def _split(
    learner_text: str | int,
    actor_text: str | int,
    pool: list[int],
    ranks: int,
    actors: int,
    kind: str,
) -> tuple[list[int], list[int]]:
    """The learner's and the actors' share of ``pool`` (cores or GPU indices)."""
    learner_key, actor_key = f"placement.learner_{kind}", f"placement.actor_{kind}"
    learner = _checked(learner_key, learner_text, pool, kind)
    actor = _checked(actor_key, actor_text, pool, kind)
    both = sorted(set(learner) & set(actor))
    if both:
        raise ConfigError(
            f"{actor_key}: {format_list(both)} also given to the learner ({learner_key}); "
            "give each process its own"
        )
    if not learner:
        rest = [n for n in pool if n not in actor]
        if kind == "gpus":
            learner = rest[:ranks]
        else:
            learner = rest[: max(1, len(pool) * ranks // (ranks + actors))]
        if not learner:
            raise ConfigError(f"{actor_key}: it leaves the learner nothing; set {learner_key}")
    if not actor:
        actor = [n for n in pool if n not in learner]
        if not actor and kind == "cpus":
            actor = pool if str(learner_text) == "" else []
        if not actor:
            raise ConfigError(f"{learner_key}: it leaves the actors nothing; set {actor_key}")
    return learner, actor


def _checked(key: str, text: str | int, pool: list[int], kind: str) -> list[int]:
    numbers = parse_list(text)
    missing = [n for n in numbers if n not in pool]
    if missing:
        what = "cores" if kind == "cpus" else "GPUs"
        available = format_list(pool) if pool else "none"
        raise ConfigError(
            f"{key}: {what} {format_list(missing)} not available to this process "
            f"(available: {available})"
        )
    return numbers


def _shares(pool: list[int], actors: int) -> list[list[int]]:
    """``pool`` split among ``actors`` in order; fewer than ``actors`` are shared round-robin."""
    if len(pool) < actors:
        return [[pool[k % len(pool)]] for k in range(actors)]
    return [pool[k * len(pool) // actors : (k + 1) * len(pool) // actors] for k in range(actors)]


def _entries(gpus: list[str], indices: list[int] | None) -> list[str] | None:
    return None if indices is None else [gpus[k] for k in indices]
