"""A child of ``thoughtmdp train`` never outlives it.

The launcher starts every learner and actor with ``PARENT_ENV`` set to its own process id and
asks the kernel (``prctl(PR_SET_PDEATHSIG)``) to send the child SIGTERM when the launcher
dies, however it dies. The child, in turn, runs :func:`watch_parent`: once the launcher is gone
(its parent, or for a learner rank started by the DeepSpeed launcher, that process id)
it stops itself as SIGTERM would (the learner checkpoints, the actor closes its engine) and,
if that takes longer than a grace period, kills its whole process group, so that the engine
processes it started (vLLM's, grandchildren of the launcher) go with it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time

PARENT_ENV = "THOUGHTMDP_PARENT_PID"
"""Environment variable holding the launcher's process id, set for its children."""

PR_SET_PDEATHSIG = 1
POLL_S = 0.5

logger = logging.getLogger(__name__)


def die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies (``Popen(preexec_fn=...)``, Linux).

    Runs in the child between fork and exec; the setting survives exec. If the parent died
    before the request took effect, the child exits at once.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: watch_parent still covers it
        pass
    if os.getppid() != parent:
        os._exit(1)


def watch_parent(grace_s: float) -> threading.Thread | None:
    """In a child of ``thoughtmdp train``: stop when the launcher is gone.

    When the parent process changes (the launcher died), SIGTERM is sent to this process;
    if it is still alive ``grace_s`` seconds later, SIGKILL goes to its process group.

    Args:
        grace_s: Seconds this process may take to stop by itself.

    Returns:
        The watching thread, or ``None`` when the process was not started by the launcher.
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent or not parent.isdigit():
        return None
    thread = threading.Thread(
        target=_watch, args=(int(parent), grace_s), name="parent-watch", daemon=True
    )
    thread.start()
    return thread


def _watch(parent: int, grace_s: float) -> None:
    # a learner rank's parent is the DeepSpeed launcher: it watches the launcher's pid itself
    while os.getppid() == parent or _alive(parent):
        time.sleep(POLL_S)
    logger.warning("the launcher (pid %d) is gone; stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    logger.error("still running %.0f s after the launcher died; killing the process group", grace_s)
    kill_own_group()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_own_group() -> None:
    """SIGKILL this process's group when it leads one (it does when the launcher started it)."""
    group = os.getpgrp()
    if group == os.getpid():
        os.killpg(group, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
