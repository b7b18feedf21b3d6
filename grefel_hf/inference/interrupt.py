"""Stopping a long run cleanly: SIGINT (Ctrl-C) and SIGTERM (a scheduler, `timeout`, a closed terminal) ask it to
stop at the next batch boundary, so that everything finished is written and the run can say what it did.

The first signal is only recorded (`StopSignals.received`); the run checks `requested` between batches. A second
signal acts as it would without the handler (Ctrl-C raises KeyboardInterrupt, SIGTERM ends the process), for a
user who does not want to wait; under a launcher (`second_acts=False`) it is ignored too, because launchers pass
a signal on to processes that got it already (Ctrl-C reaches the launcher and its processes) and end those that
do not stop within their grace period themselves. Handlers can only be installed from the main thread; elsewhere nothing changes.
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status(signum: int) -> int:
    """The conventional exit status of a command stopped by signal `signum` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


class StopSignals:
    """A context manager: while active, SIGINT and SIGTERM set `received` instead of ending the process;
    `second_acts`: whether a second signal acts as it would without the handler (else it is ignored)."""

    def __init__(self, second_acts: bool = True):
        self.received: int | None = None
        self.second_acts = second_acts
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
            if self.second_acts:
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
