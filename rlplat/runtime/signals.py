"""Preemption: SIGTERM/SIGINT ask the loop to stop at the next safe point and checkpoint.

Waits that may be abandoned (generation, scoring) stop at once; training, which cannot be left
half done, gets ``faults.preempt_grace_s`` to finish its step (``StopRequested.overdue``).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType, TracebackType

from typing_extensions import Self


class Preempted(RuntimeError):
    """The run stopped on SIGTERM/SIGINT after writing a checkpoint (exit code 143)."""


class StopRequested:
    """Context manager that turns SIGTERM/SIGINT into a flag the main loop polls.

    A second signal restores the default behaviour, so an impatient Ctrl-C still stops at once.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.since = 0.0
        self._old: dict[int, object] = {}

    def __bool__(self) -> bool:
        return self.signal is not None

    def requested(self) -> bool:
        """Whether a stop was asked for (an ``interrupt`` for waits that may be abandoned)."""
        return self.signal is not None

    def overdue(self, grace_s: float) -> Callable[[], bool]:
        """An ``interrupt`` that fires ``grace_s`` seconds after the signal (for training)."""
        return lambda: self.signal is not None and time.monotonic() - self.since > grace_s

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
        self.since = time.monotonic()
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]

    def __enter__(self) -> Self:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
