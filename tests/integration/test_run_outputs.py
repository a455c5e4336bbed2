"""What a finished run leaves besides its model: ``report.md`` with plots drawn from its step lines,
TensorBoard events of every stage that logs steps, and plain progress lines in the launcher's
output (it is not a terminal)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launch_helpers import log_path
from rlplat.metrics import read_metrics
from rlplat.report.plots import read_plot_series

pytestmark = pytest.mark.slow


def test_report_plots_hold_the_logged_series(reference_run: Path) -> None:
    rows = read_metrics(reference_run / "metrics.jsonl")
    text = (reference_run / "report.md").read_text()
    assert text.startswith("# Run report: run") and "| GRPO steps | 4 |" in text
    for name in ("reward", "kl_entropy", "response_length", "step_time", "sync", "mismatch", "stage_losses"):
        assert f"](plots/{name}.png)" in text and (reference_run / "plots" / f"{name}.png").is_file()
    reward = read_plot_series(reference_run / "plots" / "reward.png")["reward and pass rate"]
    assert reward["pass_rate"] == [[float(r["step"]) for r in rows], [r["pass_rate"] for r in rows]]
    phases = read_plot_series(reference_run / "plots" / "step_time.png")["step time"]
    stacked = [sum(values[i] for _, values in phases.values()) for i in range(len(rows))]
    assert stacked == pytest.approx([r["time/step_s"] for r in rows])
    warm = read_metrics(reference_run / "stages" / "warmstart" / "metrics.jsonl")
    losses = read_plot_series(reference_run / "plots" / "stage_losses.png")["training loss"]["warmstart"]
    assert len(warm) == 30 and losses[1] == [r["sft/loss"] for r in warm]


def test_tensorboard_events_of_each_stage(reference_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars(stage: str, tag: str) -> list[tuple[int, float]]:
        acc = EventAccumulator(str(reference_run / "tensorboard" / stage))
        acc.Reload()
        return [(e.step, e.value) for e in acc.Scalars(tag)]

    rows = read_metrics(reference_run / "metrics.jsonl")
    logged = scalars("grpo", "pass_rate")
    assert [s for s, _ in logged] == [r["step"] for r in rows]
    assert [v for _, v in logged] == pytest.approx([r["pass_rate"] for r in rows])
    assert [s for s, _ in scalars("warmstart", "sft/loss")] == list(range(1, 31))


def test_progress_is_plain_lines_when_not_on_a_terminal(reference_run: Path) -> None:
    out = log_path(reference_run).read_text()
    assert "\r" not in out  # no bar redraws in a log
    grpo = [line for line in out.splitlines() if line.startswith("[grpo] step ")]
    assert [line.split(" (")[0] for line in grpo] == [f"[grpo] step {k}/4" for k in range(1, 5)]
    assert "| pass " in grpo[-1] and "| reward " in grpo[-1]
    assert any(line.startswith("[warmstart] step 30/30 (100%)") for line in out.splitlines())
