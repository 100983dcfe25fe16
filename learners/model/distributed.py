"""Process-group plumbing for a learner of several ranks (DeepSpeed launcher or torchrun).

Only rank 0 talks to actors; it hands each step's episodes to the other ranks with
:func:`broadcast_episodes`, encoded in the wire format (no pickle between ranks either).

Two timeouts apply. Training collectives (gradient reduction, ZeRO gathers, metric sums) run
on the default group with ``deepspeed.collective_timeout_s``, so a rank that died or hangs
ends the run within minutes. Only the episode hand-out, where the other ranks wait while rank
0 waits for actors, runs on a separate gloo group with ``deepspeed.episode_timeout_s``.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.deepspeed import DeepSpeedSettings
from thoughtmdp.types import Episode
from thoughtmdp.wire import decode, encode_episode

# Set by init_distributed: the group of the episode hand-out (long timeout, on the CPU).
_episode_group: dist.ProcessGroup | None = None
# Files this rank leaves behind unless removed at exit (DeepSpeed's CPU all-reduce buffer).
_files_to_remove: list[Path] = []
# Words of the errors torch.distributed raises when a peer is gone or a collective timed out.
_PEER_FAILURE_MARKS = ("gloo", "NCCL", "Connection reset", "Connection closed", "Timed out")


class PeerLost(ThoughtMDPError):
    """A collective with the other ranks failed: one of them died or did not answer in time."""


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by a launcher (1 when started as a plain process)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(settings: DeepSpeedSettings) -> torch.device:
    """Join the launcher's process group (gloo on CPU) and pick this rank's device.

    The default group gets the short ``collective_timeout_s``; a second, gloo group with
    ``episode_timeout_s`` carries :func:`broadcast_episodes` (every rank must call this).

    Args:
        settings: DeepSpeed settings (``backend`` overrides the automatic choice).

    Returns:
        The device this rank computes on.
    """
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    global _episode_group
    accelerator = get_accelerator()
    on_cpu = accelerator.device_name() == "cpu"
    backend = settings.backend or ("gloo" if on_cpu else accelerator.communication_backend_name())
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=settings.collective_timeout_s)
        deepspeed.init_distributed(dist_backend=backend, timeout=timeout)
    long_wait = datetime.timedelta(seconds=settings.episode_timeout_s)
    _episode_group = dist.new_group(backend="gloo", timeout=long_wait)
    if on_cpu:
        _files_to_remove.append(Path(cpu_allreduce_buffer(dist.get_rank())))
        atexit.register(remove_rank_files)
        return torch.device("cpu")
    accelerator.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(accelerator.current_device_name())


def cpu_allreduce_buffer(rank: int) -> str:
    """The shared-memory file DeepSpeed's CPU all-reduce makes for ``rank`` and never removes.

    Named after the user and the launcher's ``MASTER_ADDR`` and ``MASTER_PORT``
    (``deepspeed/ops/csrc/cpu/comm/shm.cpp``); about 70 MB a rank.
    """
    where = f"{os.environ.get('MASTER_ADDR')}_{os.environ.get('MASTER_PORT')}"
    return f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_{where}_{rank}"


def remove_rank_files() -> None:
    """Remove the files this rank made that outlive it (run at exit)."""
    for path in _files_to_remove:
        path.unlink(missing_ok=True)


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` comes from a collective whose peer died or timed out."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(mark in text for mark in _PEER_FAILURE_MARKS)


@contextlib.contextmanager
def peer_failures(what: str, timeout_setting: str = "collective_timeout_s") -> Iterator[None]:
    """Turn a failed collective inside the block into a :class:`PeerLost` naming ``what``.

    Args:
        what: What the block does, e.g. ``"the update"``.
        timeout_setting: The ``deepspeed.`` setting whose timeout applies to the block.

    Raises:
        PeerLost: If a collective of the block failed; other errors pass unchanged.
    """
    try:
        yield
    except Exception as error:
        if not dist.is_initialized() or not is_peer_failure(error):
            raise
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PeerLost(
            f"learner rank {dist.get_rank()}: lost the other ranks during {what}: another rank "
            f"died or did not answer within deepspeed.{timeout_setting} (see its log); "
            f"{first_line}"
        ) from error


@contextlib.contextmanager
def exit_on_peer_loss(who: str, code: int = 1) -> Iterator[None]:
    """End the process with ``code`` when a :class:`PeerLost` leaves the block.

    After a failed collective the process group holds work that never finishes, and tearing
    it down at interpreter exit can abort the process (gloo: ``terminate called without an
    active exception``), which would replace the error and its exit code with SIGABRT. So
    the error is printed as ``"{who}: {error}"``, the logs are flushed and the process ends
    without that teardown. Clean up (sockets, files) inside the block.
    """
    try:
        yield
    except PeerLost as error:
        print(f"{who}: {error}", file=sys.stderr)
        remove_rank_files()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def broadcast_bytes(
    data: bytes | None, device: torch.device, group: dist.ProcessGroup | None = None
) -> bytes:
    """Rank 0's ``data`` on every rank (others pass ``None``), over ``group`` (default: all)."""
    size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=device)
    source = dist.get_global_rank(group, 0) if group is not None else 0
    dist.broadcast(size, src=source, group=group)
    buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    if data is not None:
        buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buffer, src=source, group=group)
    return bytes(buffer.cpu().numpy().tobytes())


def pack_episodes(episodes: Sequence[Episode]) -> bytes:
    """Episodes as one buffer: a count, frame lengths, then the wire frames back to back."""
    frames = [[bytes(f) for f in encode_episode(e)] for e in episodes]
    lengths = [len(fs) for fs in frames] + [len(f) for fs in frames for f in fs]
    head = np.array([len(frames), *lengths], dtype=np.int64).tobytes()
    return head + b"".join(f for fs in frames for f in fs)


def unpack_episodes(data: bytes) -> list[Episode]:
    """The inverse of :func:`pack_episodes`.

    Raises:
        ThoughtMDPError: If a frame does not decode to an episode.
    """
    count = int(np.frombuffer(data, dtype=np.int64, count=1)[0])
    per_episode = np.frombuffer(data, dtype=np.int64, count=count, offset=8).tolist()
    total = sum(per_episode)
    sizes = np.frombuffer(data, dtype=np.int64, count=total, offset=8 * (1 + count)).tolist()
    offset, episodes, cursor = 8 * (1 + count + total), [], 0
    for n in per_episode:
        frames = []
        for size in sizes[cursor : cursor + n]:
            frames.append(data[offset : offset + size])
            offset += size
        cursor += n
        message = decode(frames)
        if not isinstance(message, Episode):
            raise ThoughtMDPError(
                f"expected an episode between ranks, got {type(message).__name__}"
            )
        episodes.append(message)
    return episodes


def broadcast_episodes(episodes: Sequence[Episode] | None, device: torch.device) -> list[Episode]:
    """Rank 0's episodes on every rank (the others pass ``None``).

    After :func:`init_distributed` this runs on the episode group, on the CPU, where the
    wait may last ``episode_timeout_s``; otherwise on the default group and ``device``.

    Raises:
        PeerLost: If rank 0 died or handed out nothing within the timeout.
    """
    data = None if episodes is None else pack_episodes(episodes)
    with peer_failures("the episode hand-out", "episode_timeout_s"):
        if _episode_group is not None:
            data = broadcast_bytes(data, torch.device("cpu"), _episode_group)
        else:
            data = broadcast_bytes(data, device)
    return unpack_episodes(data)
