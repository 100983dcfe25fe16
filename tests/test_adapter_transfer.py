"""Adapters of any size without a shared file system: pulled in chunks, verified, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from thoughtmdp.agents.backends.adapters import apply_notice
from thoughtmdp.agents.backends.scripted import ScriptedBackend
from thoughtmdp.learners.publish import AdapterPublisher
from thoughtmdp.transport import EpisodeReceiver, EpisodeSender, TransferFailed
from thoughtmdp.wire import ADAPTER_WEIGHTS, CHUNK_BYTES, MAX_MESSAGE_BYTES, ChunkRequest

ROOT = Path(__file__).resolve().parents[1]
BIG_BYTES = 300 * 10**6 + 12345  # past the message cap, and not a whole number of chunks

# The actor: pulls the adapter announced in reply to its hello while it streams episodes.
ACTOR = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from thoughtmdp.agents.backends.adapters import apply_notice
    from thoughtmdp.agents.backends.scripted import ScriptedBackend
    from thoughtmdp.transport import EpisodeSender
    from thoughtmdp.types import Episode

    async def main(address, root):
        backend = ScriptedBackend(None, None)
        async with EpisodeSender(address, "actor-big", hello_interval=0.3) as sender:
            while sender.latest is None:
                await asyncio.sleep(0.01)
            async def stream():
                while True:
                    await sender.send(Episode(f"train/{sender.sent}", ()))
            streaming = asyncio.create_task(stream())
            before = sender.sent
            loaded = await apply_notice(backend, sender.latest, Path(root), sender.pull_adapter)
            during = sender.sent - before
            streaming.cancel()
        status = Path("/proc/self/status").read_text()  # ru_maxrss counts the parent's too
        peak_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
        return {"loaded": loaded, "paths": backend.loaded, "during": during, "peak_mb": peak_mb}

    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
    """
)


def write_adapter(folder: Path, size: int, seed: int = 0) -> str:
    """An adapter folder with ``size`` random bytes of weights; returns their SHA-256."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    rng, digest = np.random.default_rng(seed), hashlib.sha256()
    with open(folder / ADAPTER_WEIGHTS, "wb") as out:
        for start in range(0, size, CHUNK_BYTES):
            piece = rng.bytes(min(CHUNK_BYTES, size - start))
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest()


def test_a_300_mb_adapter_reaches_another_process_while_episodes_flow(tmp_path):
    digest = write_adapter(tmp_path / "adapters" / "v000001", BIG_BYTES)
    publisher = AdapterPublisher(tmp_path / "adapters", inline=True)
    notice = publisher.notice(1)
    assert notice.files == () and notice.sha256 == digest
    assert dict(notice.sizes)[ADAPTER_WEIGHTS] == BIG_BYTES > MAX_MESSAGE_BYTES
    (tmp_path / "actor").mkdir()
    stop = threading.Event()
    with EpisodeReceiver(window=2) as receiver:
        receiver.publish(notice, publisher.folder(1))

        def learner() -> None:  # takes episodes as they come, giving credits back
            while not stop.is_set():
                with contextlib.suppress(queue.Empty):
                    receiver.get(timeout=0.1)

        thread = threading.Thread(target=learner)
        thread.start()
        try:
            actor = subprocess.run(
                [sys.executable, "-c", ACTOR, receiver.address, str(tmp_path / "actor")],
                capture_output=True, text=True, timeout=300, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
            )  # fmt: skip
        finally:
            stop.set()
            thread.join()
    assert actor.returncode == 0, actor.stderr
    result = json.loads(actor.stdout)
    assert result["loaded"] is True
    [path] = result["paths"]
    weights = Path(path) / ADAPTER_WEIGHTS
    assert weights.stat().st_size == BIG_BYTES
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest
    assert result["during"] >= 3  # episodes kept going out while the adapter came in
    assert result["peak_mb"] < 200  # a few chunks, never the adapter, in memory


def serve_and_pull(tmp_path, publish, pull):
    """Run ``pull(sender)`` in an actor connected to a receiver prepared by ``publish``."""
    with EpisodeReceiver() as receiver:
        publish(receiver)

        async def main():
            async with EpisodeSender(receiver.address, "actor-0", chunk_timeout=0.5) as sender:
                while sender.latest is None:
                    await asyncio.sleep(0.01)
                return await pull(sender)

        return asyncio.run(main())


def test_a_pulled_adapter_whose_digest_differs_is_refused_and_removed(tmp_path, caplog):
    write_adapter(tmp_path / "adapters" / "v000001", 3 * CHUNK_BYTES // 2)
    publisher = AdapterPublisher(tmp_path / "adapters", inline=True, inline_limit=1000)
    notice = publisher.notice(1)
    assert notice.sizes and not notice.files
    forged = type(notice)(1, "0" * 64, sizes=notice.sizes)
    backend = ScriptedBackend(None, None)
    (tmp_path / "actor").mkdir()

    async def pull(sender):
        return await apply_notice(backend, sender.latest, tmp_path / "actor", sender.pull_adapter)

    loaded = serve_and_pull(tmp_path, lambda r: r.publish(forged, publisher.folder(1)), pull)
    assert loaded is False and backend.policy_version == 0
    assert list((tmp_path / "actor").iterdir()) == []
    assert f"the notice says {'0' * 64}; keeping version 0" in caplog.text


def test_the_learner_answers_an_unserved_version_or_file_with_an_error(tmp_path):
    write_adapter(tmp_path / "adapters" / "v000001", 10)
    publisher = AdapterPublisher(tmp_path / "adapters", inline=True, inline_limit=5)
    notice = publisher.notice(1)

    async def pull(sender):
        wrong_version = await sender.request_chunk(ChunkRequest(2, ADAPTER_WEIGHTS, 0, 4))
        wrong_name = await sender.request_chunk(ChunkRequest(1, "secrets.txt", 0, 4))
        piece = await sender.request_chunk(ChunkRequest(1, ADAPTER_WEIGHTS, 6, 100))
        return wrong_version.error, wrong_name.error, piece.data

    errors = serve_and_pull(tmp_path, lambda r: r.publish(notice, publisher.folder(1)), pull)
    weights = (publisher.folder(1) / ADAPTER_WEIGHTS).read_bytes()
    assert errors == (
        "adapter v2 is not served (served: [1])",
        "adapter v1 has no file 'secrets.txt'",
        weights[6:],
    )


def test_a_pull_from_a_learner_that_does_not_answer_fails_after_its_tries(tmp_path):
    write_adapter(tmp_path / "adapters" / "v000001", 10)
    notice = AdapterPublisher(tmp_path / "adapters", inline=True, inline_limit=5).notice(1)
    receiver = EpisodeReceiver()
    receiver.publish(notice, tmp_path / "adapters" / "v000001")

    async def main():
        async with EpisodeSender(receiver.address, "actor-0", chunk_timeout=0.2) as sender:
            while sender.latest is None:
                await asyncio.sleep(0.01)
            receiver.close()  # the learner is gone
            with pytest.raises(TransferFailed, match=re.escape("after 3 requests of 0.2 s")):
                await sender.pull_adapter(notice, tmp_path)

    asyncio.run(main())


def test_publishing_a_notice_of_sizes_needs_its_folder(tmp_path):
    write_adapter(tmp_path / "adapters" / "v000001", 10)
    notice = AdapterPublisher(tmp_path / "adapters", inline=True, inline_limit=5).notice(1)
    with (
        EpisodeReceiver() as receiver,
        pytest.raises(ValueError, match="^adapter v1 lists file sizes: pass its folder$"),
    ):
        receiver.publish(notice)
