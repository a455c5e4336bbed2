"""The run report: the plotted series are the logged ones, the PNGs carry them and are drawn,
``report.md`` shows every plot, and ``python -m rlplat.report`` redraws and overlays runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from rlplat.report.__main__ import main
from rlplat.report.document import load_run, write_report
from rlplat.report.plots import draw, plot_series, plots_for, read_plot_series


def _rows(n: int = 6, offset: float = 0.0) -> list[dict[str, Any]]:
    rows = []
    for step in range(1, n + 1):
        rows.append({"step": step, "reward/mean": 0.1 * step + offset, "pass_rate": 0.05 * step + offset,
                     "kl": 0.01 * step, "entropy": 2.0 - 0.1 * step, "response_length/mean": 20.0 + step,
                     "response_length/max": 24.0 + step, "time/step_s": 4.0, "time/rollout_s": 2.0,
                     "time/reward_s": 0.5, "time/train_s": 1.0, "time/sync_s": 0.25, "sync/bytes": 1e6,
                     **({"eval/pass_rate": 0.3 + 0.01 * step} if step % 2 == 0 else {})})
    return rows


def _write_run(root: Path, name: str, rows: list[dict[str, Any]], sft: list[dict[str, Any]] | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if sft:
        (run / "stages" / "sft").mkdir(parents=True)
        (run / "stages" / "sft" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft))
    return run


def _by_name(rows: list[dict[str, Any]], **more: list[dict[str, Any]]) -> dict[str, Any]:
    return {p.name: p for p in plots_for({"a": rows, **more})}


def test_plotted_series_are_the_logged_values() -> None:
    rows = _rows()
    plots = _by_name(rows)
    # Nothing logged the curriculum or mismatch keys: those plots are left out, not drawn empty.
    assert set(plots) == {"reward", "kl_entropy", "response_length", "step_time", "sync"}
    reward = {s.label: s for s in plots["reward"].panels[0].series}
    assert reward["pass_rate"].values == tuple(r["pass_rate"] for r in rows)
    # The held-out pass rate is plotted at the steps that evaluated, and only there.
    assert reward["eval/pass_rate"].steps == (2.0, 4.0, 6.0)
    assert reward["eval/pass_rate"].values == tuple(r["eval/pass_rate"] for r in rows if "eval/pass_rate" in r)
    (phases,) = plots["step_time"].panels
    assert phases.stacked and [s.label for s in phases.series] == ["rollout", "reward", "train", "sync", "other"]
    totals = np.sum([s.values for s in phases.series], axis=0)
    assert totals == pytest.approx([r["time/step_s"] for r in rows])  # the stack adds up to the step time


def test_curriculum_and_mismatch_plots_appear_when_logged() -> None:
    rows = [{**r, "curriculum/target_center": 0.2 + 0.1 * r["step"], "mismatch/kl": 1e-4} for r in _rows()]
    plots = _by_name(rows)
    centre = plots["curriculum"].panels[0].series[0]
    assert centre.label == "curriculum/target_center" and centre.values == tuple(r["curriculum/target_center"]
                                                                                 for r in rows)
    assert plots["mismatch"].panels[0].series[0].values == (1e-4,) * len(rows)


def test_overlaid_runs_get_a_line_each_and_a_stacked_panel_each() -> None:
    plots = _by_name(_rows(), b=_rows(4, offset=0.5))
    labels = [s.label for s in plots["reward"].panels[0].series]
    assert "a: pass_rate" in labels and "b: pass_rate" in labels
    b_pass = next(s for s in plots["reward"].panels[0].series if s.label == "b: pass_rate")
    assert b_pass.values == tuple(r["pass_rate"] for r in _rows(4, offset=0.5))
    assert [p.title for p in plots["step_time"].panels] == ["a: step time", "b: step time"]


def test_drawn_lines_hold_the_series() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot = _by_name(_rows())["kl_entropy"]
    fig = draw(plot)
    try:
        for ax, panel in zip(fig.axes, plot.panels):
            drawn = {line.get_label(): line.get_xydata() for line in ax.get_lines()}
            for s in panel.series:
                assert drawn[s.label].tolist() == [list(p) for p in zip(s.steps, s.values)]
    finally:
        plt.close(fig)


def test_report_writes_pngs_carrying_their_data_and_a_markdown_page(tmp_path: Path) -> None:
    rows = _rows()
    sft = [{"step": i, "sft/loss": 3.0 / i, "sft/lr": 1e-3} for i in range(1, 11)]
    run = _write_run(tmp_path, "run", rows, sft)
    path = write_report(run, [load_run(run)])
    text = path.read_text()
    assert "| pass rate (first 3 steps → last 3) | 0.100 → 0.250 |" in text
    plots = {p.name: p for p in plots_for({"run": rows}, {"run": load_run(run).stage_rows})}
    assert "stage_losses" in plots
    for name, plot in plots.items():
        png = run / "plots" / f"{name}.png"
        assert f"](plots/{name}.png)" in text
        assert read_plot_series(png) == json.loads(json.dumps(plot_series(plot)))
        pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert pixels.shape[1] >= 600 and pixels.std() > 5  # a drawn figure, not a blank canvas
    losses = read_plot_series(run / "plots" / "stage_losses.png")["training loss"]["sft"]
    assert losses == [[float(r["step"]) for r in sft], [r["sft/loss"] for r in sft]]


def test_cli_redraws_one_run_and_overlays_several(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _write_run(tmp_path, "a", _rows()), _write_run(tmp_path, "b", _rows(4, offset=0.5))
    assert main([str(a)]) == 0 and (a / "report.md").is_file()
    assert main([str(a), str(b)]) == 2
    assert "--out is required" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err
    out = tmp_path / "compared"
    assert main([str(a), str(b), "--out", str(out)]) == 0
    assert (out / "report.md").read_text().startswith("# Runs compared: a, b")
    series = read_plot_series(out / "plots" / "reward.png")["reward and pass rate"]
    assert series["b: reward/mean"][1] == [r["reward/mean"] for r in _rows(4, offset=0.5)]
