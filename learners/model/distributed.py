"""Process-group plumbing for a learner of several ranks (DeepSpeed launcher or torchrun).

Only rank 0 talks to actors; it hands each step's episodes to the other ranks with
:func:`broadcast_episodes`, encoded in the wire format (no pickle between ranks either).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

from thoughtmdp.errors import ThoughtMDPError
from thoughtmdp.settings.learner import DeepSpeedSettings
from thoughtmdp.types import Episode
from thoughtmdp.wire import decode, encode_episode

# Non-zero ranks wait in a collective while rank 0 waits for actors: allow a long wait.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=6)


def launched_world_size() -> int:
    """``WORLD_SIZE`` set by a launcher (1 when started as a plain process)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(settings: DeepSpeedSettings) -> torch.device:
    """Join the launcher's process group (gloo on CPU) and pick this rank's device.

    Args:
        settings: DeepSpeed settings (``backend`` overrides the automatic choice).

    Returns:
        The device this rank computes on.
    """
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    on_cpu = accelerator.device_name() == "cpu"
    backend = settings.backend or ("gloo" if on_cpu else accelerator.communication_backend_name())
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=backend, timeout=COLLECTIVE_TIMEOUT)
    if on_cpu:
        return torch.device("cpu")
    accelerator.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(accelerator.current_device_name())


def broadcast_bytes(data: bytes | None, device: torch.device) -> bytes:
    """Rank 0's ``data`` on every rank (others pass ``None``)."""
    size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    if data is not None:
        buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buffer, src=0)
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
    """Rank 0's episodes on every rank (the others pass ``None``)."""
    data = broadcast_bytes(None if episodes is None else pack_episodes(episodes), device)
    return unpack_episodes(data)
