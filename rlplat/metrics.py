"""Step metrics: ``metrics.jsonl`` (one JSON object per step), Ray dashboard gauges, a progress bar.

Every GRPO step line carries ``STEP_KEYS`` (DESIGN.md contract 3); stages add prefixed keys.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlbase import write_jsonl

STEP_KEYS = (
    "step", "reward/mean", "pass_rate", "kl", "entropy", "response_length/mean", "time/step_s",
    "time/rollout_s", "time/reward_s", "time/train_s", "time/sync_s", "tokens/generated",
    "tokens_per_s", "sync/bytes", "weights/version",
)

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
    """Appends one line per step (flushed and fsynced: a crash loses no logged step)."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, progress: bool = True,
                 ray_gauges: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.file = open(self.path, "a", encoding="utf-8")
        self.gauges: dict[str, Any] = {}
        self.ray_gauges = ray_gauges
        self.bar = _progress_bar(total_steps, start_step) if progress else None

    def log(self, metrics: Mapping[str, Any]) -> None:
        """Write one step's metrics; values must be JSON numbers (NaN/inf written as null)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in metrics.items()}
        self.file.write(json.dumps(clean) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        if self.ray_gauges:
            self._export(clean)
        if self.bar is not None:
            self.bar.set_postfix({short: _fmt(clean.get(k)) for k, short in _BAR_KEYS}, refresh=False)
            self.bar.update(1)

    def _export(self, metrics: Mapping[str, Any]) -> None:
        """Ray gauges (``ray_rlplat_<key>`` on the metrics export port, shown by the dashboard)."""
        from ray.util.metrics import Gauge

        for key, value in metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            name = "rlplat_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
            if name not in self.gauges:
                self.gauges[name] = Gauge(name, description=f"rlplat step metric {key}")
            self.gauges[name].set(float(value))

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
