"""End-of-run report: start and end pass rate, steps, time split (``report.json`` + printed)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_TIME_KEYS = ("time/rollout_s", "time/reward_s", "time/train_s", "time/sync_s")


def summarize(rows: Sequence[dict[str, Any]], window: int = 3) -> dict[str, Any]:
    """Pass rate of the first and last ``window`` steps, totals of the time split."""
    if not rows:
        return {"steps": 0}
    first, last = rows[:window], rows[-window:]
    total = sum(r["time/step_s"] for r in rows)
    return {
        "steps": rows[-1]["step"],
        "pass_rate/start": statistics.fmean(r["pass_rate"] for r in first),
        "pass_rate/end": statistics.fmean(r["pass_rate"] for r in last),
        "reward/start": statistics.fmean(r["reward/mean"] for r in first),
        "reward/end": statistics.fmean(r["reward/mean"] for r in last),
        "time/total_s": total,
        **{f"{k}_share": sum(r[k] for r in rows) / max(total, 1e-9) for k in _TIME_KEYS},
    }


def write_report(run_dir: Path, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Write ``report.json`` into ``run_dir`` and return the summary."""
    summary = {**summarize(rows), "run_dir": str(run_dir)}
    (run_dir / "report.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_report(summary: dict[str, Any]) -> str:
    """A short human summary of ``summarize`` output."""
    if not summary.get("steps"):
        return f"no GRPO steps recorded; run directory: {summary.get('run_dir')}"
    split = ", ".join(f"{k.split('/')[1].removesuffix('_s')} {summary[k + '_share']:.0%}" for k in _TIME_KEYS)
    return (f"GRPO: {summary['steps']} steps in {summary['time/total_s']:.0f} s; pass rate "
            f"{summary['pass_rate/start']:.3f} (first 3 steps) -> {summary['pass_rate/end']:.3f} (last 3); "
            f"time split: {split}.\nRun directory: {summary['run_dir']}")
