"""Stopping a long run cleanly: SIGINT (Ctrl-C) and SIGTERM (a scheduler, `timeout`, a closed terminal) ask it to
stop at the next batch boundary, so that everything finished is written and the run can say what it did.

The first signal is only recorded (`StopSignals.received`); the run checks `requested` between batches. A second
signal acts as it would without the handler (Ctrl-C raises KeyboardInterrupt, SIGTERM ends the process), for a
user who does not want to wait. Handlers can only be installed from the main thread; elsewhere nothing changes.
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status(signum: int) -> int:
    """The conventional exit status of a command stopped by signal `signum` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


class StopSignals:
    """A context manager: while active, SIGINT and SIGTERM set `received` instead of ending the process."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str | None:
        """"SIGINT" or "SIGTERM" once one was received."""
        return None if self.received is None else signal.Signals(self.received).name

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
            self._restore()  # a second signal acts at once

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        self._restore()


__all__ = ["STOP_SIGNALS", "StopSignals", "exit_status"]
