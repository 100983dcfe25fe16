"""The learner's side of chunked adapter transfer: the files of recent versions, by piece.

A notice that lists file sizes (:attr:`~thoughtmdp.wire.AdapterNotice.sizes`) is served from
the learner's own adapter folder; actors ask for it one :class:`~thoughtmdp.wire.ChunkRequest`
at a time. Only the newest :data:`KEPT_VERSIONS` versions are served: an actor still pulling
an older one gets an error chunk and waits for the newer notice it has by then.
"""

from __future__ import annotations

import collections
from pathlib import Path

from thoughtmdp.wire import CHUNK_BYTES, AdapterNotice, Chunk, ChunkRequest

KEPT_VERSIONS = 3


class ServedAdapters:
    """Adapter versions whose files actors may pull, newest :data:`KEPT_VERSIONS` only.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "w").write_bytes(b"0123456789")
    >>> served = ServedAdapters()
    >>> served.add(AdapterNotice(1, "", sizes=(("w", 10),)), folder)
    >>> served.answer(ChunkRequest(1, "w", 4, 3)).data
    b'456'
    >>> served.answer(ChunkRequest(2, "w", 0, 3)).error
    'adapter v2 is not served (served: [1])'
    """

    def __init__(self) -> None:
        self._versions: collections.OrderedDict[int, tuple[Path, dict[str, int]]] = (
            collections.OrderedDict()
        )

    def add(self, notice: AdapterNotice, folder: Path) -> None:
        """Serve the files ``notice`` lists from ``folder``; forget versions past the newest few."""
        self._versions[notice.version] = (Path(folder), dict(notice.sizes))
        self._versions.move_to_end(notice.version)
        while len(self._versions) > KEPT_VERSIONS:
            self._versions.popitem(last=False)

    def answer(self, request: ChunkRequest) -> Chunk:
        """The requested piece (at most :data:`CHUNK_BYTES`), or a chunk naming the error."""
        where = (request.version, request.name, request.offset)
        if request.version not in self._versions:
            served = sorted(self._versions)
            return Chunk(
                *where, error=f"adapter v{request.version} is not served (served: {served})"
            )
        folder, sizes = self._versions[request.version]
        if request.name not in sizes:
            return Chunk(*where, error=f"adapter v{request.version} has no file {request.name!r}")
        if request.offset >= max(1, sizes[request.name]):
            size = sizes[request.name]
            return Chunk(
                *where, error=f"offset {request.offset} is past {request.name!r} ({size} bytes)"
            )
        try:
            with open(folder / request.name, "rb") as f:
                f.seek(request.offset)
                data = f.read(min(request.length, CHUNK_BYTES))
        except OSError as exc:
            return Chunk(*where, error=f"cannot read adapter v{request.version}: {exc}")
        return Chunk(*where, data=data)
