"""How ``thoughtmdp train`` is stopped: SIGINT, SIGTERM or SIGHUP become :class:`Interrupted`.

The first of these signals raises :class:`Interrupted` wherever the run is (a subclass of
``KeyboardInterrupt``, so no ``except Exception`` swallows it); the run then stops its
processes, writes the summary so far and the plots, and names the command that continues it.
Signals that arrive while it does so are ignored, so the clean-up is not cut short.
"""

from __future__ import annotations

import signal
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal.

    Attributes:
        signum: The signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """``128 + signum``, as a shell reports a process ended by the signal (130, 143)."""
        return 128 + self.signum


class StopSignals:
    """While entered, the first stop signal raises :class:`Interrupted`; later ones do nothing.

    >>> import os
    >>> with StopSignals() as stops:
    ...     try:
    ...         os.kill(os.getpid(), signal.SIGHUP)
    ...     except Interrupted as exc:
    ...         print(exc.exit_code)
    ...     os.kill(os.getpid(), signal.SIGHUP)  # ignored: the run is already stopping
    129
    >>> stops.received
    1
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            return
        self.received = signum
        raise Interrupted(signum)
