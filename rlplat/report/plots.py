"""The report's plots: what each one shows (``plots_for``, pure) and drawing it (``save_plot``).

``plots_for`` turns the step lines of one or more runs into ``Plot`` values: titled panels of
labelled series, nothing drawn yet. ``save_plot`` draws one as a PNG and embeds the series it drew
in the file's ``rlplat:series`` text chunk (``read_plot_series``), so that the data behind a
picture can be checked against ``metrics.jsonl`` without reading pixels. With several runs every
series is drawn once per run (labelled ``run: series``), except stacked areas, which get a panel
per run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlplat.report.summary import TIME_KEYS, phase_name

Rows = Sequence[Mapping[str, Any]]
SERIES_KEY = "rlplat:series"
# The step phases of the stacked area, bottom to top; "other" is the rest of the step's time.
PHASES = tuple((k, phase_name(k)) for k in TIME_KEYS)


@dataclass(frozen=True)
class Series:
    """One curve: ``values[i]`` at ``steps[i]`` (steps without the key are left out)."""

    label: str
    steps: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Panel:
    """One axes: its series drawn as lines, or as a stacked area when ``stacked``."""

    title: str
    ylabel: str
    series: tuple[Series, ...]
    stacked: bool = False


@dataclass(frozen=True)
class Plot:
    """One PNG file, ``<name>.png``, of one or more panels side by side."""

    name: str
    title: str
    panels: tuple[Panel, ...]


def series(rows: Rows, key: str, label: str | None = None) -> Series:
    """``key`` over the steps whose line has a number for it."""
    pts = [(float(r["step"]), float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
    return Series(label or key, tuple(p[0] for p in pts), tuple(p[1] for p in pts))


def step_phases(rows: Rows) -> tuple[Series, ...]:
    """The stacked step-time breakdown: each phase, then the step's time the phases leave over
    (never below 0: an asynchronous step's phases overlap)."""
    steps = tuple(float(r["step"]) for r in rows)
    out = [Series(name, steps, tuple(float(r.get(k) or 0.0) for r in rows)) for k, name in PHASES]
    other = tuple(max(float(r.get("time/step_s") or 0.0) - sum(float(r.get(k) or 0.0) for k, _ in PHASES), 0.0)
                  for r in rows)
    return (*out, Series("other", steps, other))


def plots_for(runs: Mapping[str, Rows], stage_rows: Mapping[str, Mapping[str, Rows]] | None = None) -> list[Plot]:
    """The report's plots for ``runs`` (run name -> GRPO step lines, in the order given); plots
    whose keys no run logged are left out. ``stage_rows`` (run -> stage -> step lines) adds the
    supervised stages' losses."""

    def lines(keys: Sequence[str]) -> tuple[Series, ...]:
        many = len(runs) > 1
        out = [series(rows, k, f"{run}: {k}" if many else k) for run, rows in runs.items() for k in keys]
        return tuple(s for s in out if s.steps)

    def panel(title: str, ylabel: str, keys: Sequence[str]) -> Panel:
        return Panel(title, ylabel, lines(keys))

    plots = [
        Plot("reward", "Reward and pass rate", (panel("reward and pass rate", "", (
            "reward/mean", "pass_rate", "eval/pass_rate")),)),
        Plot("kl_entropy", "KL and entropy", (panel("KL to the reference", "kl", ("kl",)),
                                              panel("entropy", "nats per token", ("entropy",)))),
        Plot("response_length", "Response length", (panel("response length", "tokens", (
            "response_length/mean", "response_length/max")),)),
        Plot("step_time", "Step time by phase", tuple(
            Panel(f"{run}: step time" if len(runs) > 1 else "step time", "seconds", step_phases(rows), stacked=True)
            for run, rows in runs.items() if rows)),
        Plot("sync", "Weight sync", (panel("sync time", "seconds", ("time/sync_s",)),
                                     panel("bytes sent", "bytes", ("sync/bytes",)))),
        Plot("curriculum", "Curriculum", (panel("target and batch difficulty", "pass rate", (
            "curriculum/target_center", "curriculum/target_mean_pass_rate", "curriculum/batch_prior_pass_rate")),)),
        Plot("mismatch", "Rollout / learner mismatch", (panel("mismatch KL", "kl", ("mismatch/kl",)), panel(
            "importance ratio", "ratio", ("mismatch/ratio_mean", "mismatch/ratio_max", "mismatch/clipped_frac")))),
    ]
    if stage_rows:
        losses = tuple(series(rows, key, f"{run}: {stage}" if len(runs) > 1 else stage)
                       for run, stages in stage_rows.items() for stage, rows in stages.items()
                       if (key := _loss_key(rows)) is not None)
        plots.append(Plot("stage_losses", "Supervised stages", (Panel("training loss", "loss", losses),)))
    kept = [Plot(p.name, p.title, tuple(x for x in p.panels if x.series)) for p in plots]
    return [p for p in kept if p.panels]


def _loss_key(rows: Rows) -> str | None:
    """A supervised stage's loss key (``sft/loss``, ``distill/loss``)."""
    return next((k for k in rows[0] if k.endswith("/loss")), None) if rows else None


def save_plot(plot: Plot, path: Path) -> None:
    """Draw ``plot`` into the PNG ``path``, with its series in the ``rlplat:series`` text chunk."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the report is written on headless machines
    import matplotlib.pyplot as plt

    fig = draw(plot)
    try:
        fig.savefig(path, dpi=100, metadata={SERIES_KEY: json.dumps(plot_series(plot))})
    finally:
        plt.close(fig)


def draw(plot: Plot) -> Any:
    """The matplotlib figure of ``plot`` (one axes per panel)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(plot.panels), figsize=(6 * len(plot.panels), 4), squeeze=False)
    for ax, p in zip(axes[0], plot.panels, strict=True):
        if p.stacked:
            ax.stackplot(p.series[0].steps, *[s.values for s in p.series], labels=[s.label for s in p.series])
        else:
            for s in p.series:
                ax.plot(s.steps, s.values, label=s.label, marker="o" if len(s.steps) < 12 else None)
        ax.set_title(p.title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(p.ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(plot.title)
    fig.tight_layout()
    return fig


def plot_series(plot: Plot) -> dict[str, dict[str, list[list[float]]]]:
    """``{panel title: {series label: [steps, values]}}``: what ``save_plot`` embeds."""
    return {p.title: {s.label: [list(s.steps), list(s.values)] for s in p.series} for p in plot.panels}


def read_plot_series(path: Path) -> dict[str, dict[str, list[list[float]]]]:
    """The series a PNG written by ``save_plot`` was drawn from."""
    from PIL import Image

    with Image.open(path) as img:
        text = img.info.get(SERIES_KEY)
    if text is None:
        raise ValueError(f"{path} has no {SERIES_KEY} chunk: it was not written by rlplat.report")
    data: dict[str, dict[str, list[list[float]]]] = json.loads(text)
    return data
