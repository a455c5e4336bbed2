"""Preemption: SIGTERM/SIGINT ask the loop to checkpoint and stop at the next step boundary."""

from __future__ import annotations

import signal
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
        self._old: dict[int, object] = {}

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
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
