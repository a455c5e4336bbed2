"""Step metrics: ``metrics.jsonl`` (one JSON object per step), tagged Ray metrics, a progress bar.

Every GRPO step line carries ``STEP_KEYS`` (DESIGN.md contract 3); stages add prefixed keys.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlbase import write_jsonl
from rlplat.telemetry import MetricTags, count, metric_name, set_gauge

STEP_KEYS = (
    "step", "reward/mean", "pass_rate", "kl", "entropy", "response_length/mean", "time/step_s",
    "time/rollout_s", "time/reward_s", "time/train_s", "time/sync_s", "tokens/generated",
    "tokens_per_s", "sync/bytes", "weights/version",
)

# Run totals (restarts, dropped prompts): Ray counters, increased by what each step adds.
COUNTED_KEYS = ("faults/rollout_restarts", "faults/reward_restarts", "faults/dropped_prompts", "faults/fp8_fallbacks")

# Shown on the progress bar, in this order.
_BAR_KEYS = (("pass_rate", "pass"), ("reward/mean", "reward"), ("kl", "kl"), ("time/step_s", "s/step"))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All step lines of a ``metrics.jsonl``."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def truncate_after(path: str | Path, step: int) -> None:
    """Drop lines with ``step`` greater than ``step`` (resume continues after a checkpoint)."""
    write_jsonl(path, [m for m in read_metrics(path) if m.get("step", 0) <= step], fsync=True)


class MetricsLogger:
    """Appends one line per step (flushed and fsynced: a crash loses no logged step) and, with
    ``tags``, exports it as Ray metrics (``rlplat.telemetry``): a gauge per numeric key, a counter
    per key of ``COUNTED_KEYS``."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, progress: bool = True,
                 tags: MetricTags | None = None) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.file = open(self.path, "a", encoding="utf-8")
        self.tags = tags
        # Counted totals already exported by this process (a resumed run counts from its checkpoint).
        self.counted: dict[str, float] = {}
        self.bar = _progress_bar(total_steps, start_step) if progress else None

    def log(self, metrics: Mapping[str, Any]) -> None:
        """Write one step's metrics; values must be JSON numbers (NaN/inf written as null)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in metrics.items()}
        self.file.write(json.dumps(clean) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        if self.tags is not None:
            self._export(clean, self.tags)
        if self.bar is not None:
            self.bar.set_postfix({short: _fmt(clean.get(k)) for k, short in _BAR_KEYS}, refresh=False)
            self.bar.update(1)

    def _export(self, metrics: Mapping[str, Any], tags: MetricTags) -> None:
        """Gauges ``rlplat_<key>``, and counters for the run totals of ``COUNTED_KEYS``."""
        for key, value in metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key in COUNTED_KEYS:
                count(metric_name(key), value - self.counted.get(key, 0.0), tags, f"rlplat run total {key}")
                self.counted[key] = float(value)
            else:
                set_gauge(metric_name(key), float(value), tags, f"rlplat step metric {key}")

    def close(self) -> None:
        """Close the file and the progress bar."""
        self.file.close()
        if self.bar is not None:
            self.bar.close()


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _progress_bar(total: int, start: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="grpo", unit="step", dynamic_ncols=True, mininterval=1.0)
