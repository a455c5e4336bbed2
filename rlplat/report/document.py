"""``report.md`` and its plots for one run (written when GRPO ends) or several overlaid
(``python -m rlplat.report``).

A report directory holds ``report.md`` (the summary table, then each plot) and ``plots/<name>.png``;
a run's own report is written into its run directory, beside ``metrics.jsonl`` and ``report.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbase import atomic_write
from rlplat.metrics import read_metrics
from rlplat.report.plots import Plot, Rows, plots_for, save_plot
from rlplat.report.summary import summarize, time_split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunData:
    """What a report reads of one run directory."""

    name: str
    run_dir: Path
    rows: tuple[Mapping[str, Any], ...]
    # Step lines of the other stages that log them (``stages/<name>/metrics.jsonl``), by stage.
    stage_rows: Mapping[str, Rows]
    # Each finished stage's held-out pass rate, in the order the stages ran (``grpo.eval_stages``).
    stage_pass_rates: tuple[tuple[str, float], ...] = ()


def load_run(run_dir: Path) -> RunData:
    """Read ``run_dir``'s step lines.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``metrics.jsonl`` and no stage step lines.
    """
    stages = {p.parent.name: read_metrics(p) for p in sorted((run_dir / "stages").glob("*/metrics.jsonl"))}
    rows = read_metrics(run_dir / "metrics.jsonl")
    if not rows and not any(stages.values()):
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl (nor stages/*/metrics.jsonl): not a run "
                                "directory, or no step finished yet")
    return RunData(run_dir.name, run_dir, tuple(rows), {k: v for k, v in stages.items() if v},
                   _stage_pass_rates(run_dir))


def _stage_pass_rates(run_dir: Path) -> tuple[tuple[str, float], ...]:
    """``(stage, eval/pass_rate)`` of every stage manifest that has one, by start time; a
    distillation's teacher (``eval/teacher_pass_rate``) just before it, as ``"<stage>'s teacher"``."""
    manifests = [json.loads(p.read_text()) for p in (run_dir / "stages").glob("*/manifest.json")]
    rows: list[tuple[str, float]] = []
    for m in sorted(manifests, key=lambda m: m.get("started_at", 0.0)):
        metrics = m.get("metrics", {})
        if "eval/teacher_pass_rate" in metrics:
            rows.append((f"{m['stage']}'s teacher", float(metrics["eval/teacher_pass_rate"])))
        if "eval/pass_rate" in metrics:
            rows.append((m["stage"], float(metrics["eval/pass_rate"])))
    return tuple(rows)


def write_run_report(run_dir: Path) -> None:
    """``write_report`` of ``run_dir`` into itself; a failure is logged, not raised (the run's results
    are saved by then: redraw with ``python -m rlplat.report RUN_DIR``)."""
    try:
        write_report(run_dir, [load_run(run_dir)])
    except Exception as err:  # noqa: BLE001 - a drawing failure must not fail a finished stage
        log.warning("report.md not written (%s: %s); redraw it with python -m rlplat.report %s",
                    type(err).__name__, err, run_dir)


def write_report(out_dir: Path, runs: Sequence[RunData]) -> Path:
    """Draw every plot of ``runs`` into ``out_dir/plots`` and write ``out_dir/report.md``; returns
    the report's path."""
    plots = plots_for({r.name: r.rows for r in runs}, {r.name: r.stage_rows for r in runs})
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    for plot in plots:
        save_plot(plot, out_dir / "plots" / f"{plot.name}.png")
    path = out_dir / "report.md"
    atomic_write(path, markdown(runs, plots))
    return path


def markdown(runs: Sequence[RunData], plots: Sequence[Plot]) -> str:
    """The text of ``report.md`` (pure): a title, the summary table, each plot."""
    title = f"Run report: {runs[0].name}" if len(runs) == 1 else "Runs compared: " + ", ".join(r.name for r in runs)
    lines = [f"# {title}", "", *summary_table(runs), "", *stage_table(runs)]
    for plot in plots:
        lines += [f"## {plot.title}", "", f"![{plot.title}](plots/{plot.name}.png)", ""]
    return "\n".join(lines)


def stage_table(runs: Sequence[RunData]) -> list[str]:
    """The held-out pass rate of each stage's output model, one column per run (nothing when no run
    measured its stages)."""
    stages = list(dict.fromkeys(s for r in runs for s, _ in r.stage_pass_rates))
    if not stages:
        return []
    rates = [dict(r.stage_pass_rates) for r in runs]
    rows = [f"| {s} | " + " | ".join(f"{r[s]:.3f}" if s in r else "–" for r in rates) + " |" for s in stages]
    return ["## Held-out pass rate by stage", "", "| stage | " + " | ".join(r.name for r in runs) + " |",
            "|---" * (len(runs) + 1) + "|", *rows, ""]


def summary_table(runs: Sequence[RunData]) -> list[str]:
    """A Markdown table: one column per run, one row per figure."""
    sums = [summarize(r.rows) for r in runs]
    rows: list[tuple[str, list[str]]] = [("run directory", [f"`{r.run_dir}`" for r in runs]),
                                         ("GRPO steps", [str(s.get("steps", 0)) for s in sums])]

    def add(label: str, start: str, end: str) -> None:
        rows.append((label, [f"{s[start]:.3f} → {s[end]:.3f}" if start in s else "–" for s in sums]))

    add("pass rate (first 3 steps → last 3)", "pass_rate/start", "pass_rate/end")
    add("reward (first 3 steps → last 3)", "reward/start", "reward/end")
    add("held-out pass rate (first → last evaluation)", "eval/pass_rate/first", "eval/pass_rate/last")
    rows.append(("GRPO wall time", [f"{s['time/total_s']:.0f} s" if "time/total_s" in s else "–" for s in sums]))
    rows.append(("time split", [time_split(s) if "time/total_s" in s else "–" for s in sums]))
    for stage in sorted({st for r in runs for st in r.stage_rows}):
        rows.append((f"{stage} steps", [str(len(r.stage_rows.get(stage, ()))) for r in runs]))
    header = "| | " + " | ".join(r.name for r in runs) + " |"
    return [header, "|---" * (len(runs) + 1) + "|", *(f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows)]
