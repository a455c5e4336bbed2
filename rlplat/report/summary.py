"""A run's summary figures: start and end pass rate and reward, the held-out pass rate, steps, the
time split (``report.json``, the launcher's last lines, the table of ``report.md``)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The phases of a GRPO step, in the order they run.
TIME_KEYS = ("time/rollout_s", "time/reward_s", "time/train_s", "time/sync_s")


def phase_name(key: str) -> str:
    """``time/rollout_s`` -> ``rollout``."""
    return key.split("/")[1].removesuffix("_s")


def summarize(rows: Sequence[Mapping[str, Any]], window: int = 3) -> dict[str, Any]:
    """Pass rate of the first and last ``window`` steps, the first and last held-out pass rate
    (when evaluated), totals of the time split."""
    if not rows:
        return {"steps": 0}
    first, last = rows[:window], rows[-window:]
    total = sum(r["time/step_s"] for r in rows)
    evals = [r["eval/pass_rate"] for r in rows if isinstance(r.get("eval/pass_rate"), (int, float))]
    return {
        **({"eval/pass_rate/first": evals[0], "eval/pass_rate/last": evals[-1]} if evals else {}),
        "steps": rows[-1]["step"],
        "pass_rate/start": statistics.fmean(r["pass_rate"] for r in first),
        "pass_rate/end": statistics.fmean(r["pass_rate"] for r in last),
        "reward/start": statistics.fmean(r["reward/mean"] for r in first),
        "reward/end": statistics.fmean(r["reward/mean"] for r in last),
        "time/total_s": total,
        **{f"{k}_share": sum(r[k] for r in rows) / max(total, 1e-9) for k in TIME_KEYS},
    }


def write_summary(run_dir: Path, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Write ``report.json`` into ``run_dir`` and return the summary."""
    summary = {**summarize(rows), "run_dir": str(run_dir)}
    (run_dir / "report.json").write_text(json.dumps(summary, indent=2))
    return summary


def time_split(summary: Mapping[str, Any]) -> str:
    """``rollout 40%, reward 5%, ...``: each phase's share of the GRPO steps' time."""
    return ", ".join(f"{phase_name(k)} {summary[k + '_share']:.0%}" for k in TIME_KEYS)


def format_report(summary: dict[str, Any]) -> str:
    """A short human summary of ``summarize`` output (a run without GRPO steps, SFT alone for
    example, has only its directory to report)."""
    if not summary.get("steps"):
        return f"Run directory: {summary.get('run_dir')}"
    split = time_split(summary)
    return (f"GRPO: {summary['steps']} steps in {summary['time/total_s']:.0f} s; pass rate "
            f"{summary['pass_rate/start']:.3f} (first 3 steps) -> {summary['pass_rate/end']:.3f} (last 3); "
            f"time split: {split}.\nRun directory: {summary['run_dir']}")
