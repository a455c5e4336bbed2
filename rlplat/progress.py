"""Progress of a stage on the driver: a tqdm bar on a terminal, plain lines everywhere else.

A stage that runs as a Ray job writes to a log that Ray forwards line by line, where a bar's carriage
returns become a wall of fragments; so the bar is drawn only when stdout is a terminal, ``progress``
is on and ``CI`` is unset. Otherwise each update is one line::

    [grpo] step 12/30 (40%) eta 1m05s | pass 0.406 | reward 0.406 | s/step 3.61

printed at most every ``min_interval_s`` seconds (the last update always prints), so a stage of
thousands of short steps (SFT) does not flood the log while GRPO, whose steps take seconds, gets a
line per step.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from typing_extensions import Self


def use_bar(enabled: bool, stream: TextIO | None = None) -> bool:
    """Whether to draw a bar: ``enabled`` (the ``progress`` setting), a terminal, and not CI."""
    s = sys.stdout if stream is None else stream
    return enabled and not os.environ.get("CI") and s.isatty()


def format_eta(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    s = max(round(seconds), 0)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_line(stage: str, unit: str, done: int, total: int, eta_s: float | None,
                  fields: Mapping[str, Any]) -> str:
    """One plain progress line (pure; see the module docstring for its shape)."""
    share = f" ({done / total:.0%})" if total else ""
    eta = f" eta {format_eta(eta_s)}" if eta_s is not None and done < total else ""
    extra = "".join(f" | {k} {_fmt(v)}" for k, v in fields.items() if v is not None)
    return f"[{stage}] {unit} {done}/{total}{share}{eta}{extra}"


class Progress:
    """Progress of ``total`` units of one stage, starting at ``start`` (a resumed run's step)."""

    def __init__(self, stage: str, total: int, start: int = 0, unit: str = "step", enabled: bool = True,
                 min_interval_s: float = 0.0, stream: TextIO | None = None) -> None:
        self.stage, self.total, self.done, self.unit = stage, total, start, unit
        self.stream = sys.stdout if stream is None else stream
        self.min_interval_s = min_interval_s
        self.t0, self.start, self.last_print = time.monotonic(), start, -float("inf")
        self.bar: Any = None
        if use_bar(enabled, self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=stage, unit=unit, dynamic_ncols=True,
                            mininterval=1.0, file=self.stream)

    def update(self, n: int = 1, **fields: Any) -> None:
        """``n`` more units done; ``fields`` (name -> value, None skipped) go on the bar or line."""
        self.done += n
        if self.bar is not None:
            self.bar.set_postfix({k: _fmt(v) for k, v in fields.items() if v is not None}, refresh=False)
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last_print < self.min_interval_s and self.done < self.total:
            return
        self.last_print = now
        rate = (self.done - self.start) / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else None
        print(progress_line(self.stage, self.unit, self.done, self.total, eta, fields), file=self.stream, flush=True)

    def close(self) -> None:
        """Close the bar (plain lines need nothing)."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)
