"""Where a stage's step lines go besides ``metrics.jsonl``: plain progress lines off a terminal,
TensorBoard event files (read back with TensorBoard's own loader) and wandb in offline mode."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from rlplat.config.schema import MetricsConfig
from rlplat.metrics import MetricsLogger, read_metrics
from rlplat.progress import Progress, format_eta, progress_line


def test_progress_line_shape() -> None:
    line = progress_line("grpo", "step", 12, 30, 65.0, {"pass": 0.40625, "reward": None, "s/step": 3.61})
    assert line == "[grpo] step 12/30 (40%) eta 1m05s | pass 0.406 | s/step 3.610"
    assert progress_line("sft", "step", 30, 30, 0.0, {}) == "[sft] step 30/30 (100%)"
    assert (format_eta(42), format_eta(3725)) == ("42s", "1h02m")


def test_plain_lines_off_a_terminal_and_throttled() -> None:
    out = io.StringIO()  # not a terminal: no bar, plain lines
    with Progress("grpo", 3, stream=out) as p:
        for _ in range(3):
            p.update(1, passed=0.5)
    assert [line.split(" eta")[0].split(" |")[0] for line in out.getvalue().splitlines()] == [
        "[grpo] step 1/3 (33%)", "[grpo] step 2/3 (67%)", "[grpo] step 3/3 (100%)"]
    out = io.StringIO()
    with Progress("sft", 100, stream=out, min_interval_s=3600.0) as p:
        for _ in range(100):
            p.update()
    # The first update prints, then nothing for an hour, except the last.
    assert [line.split(" eta")[0] for line in out.getvalue().splitlines()] == [
        "[sft] step 1/100 (1%)", "[sft] step 100/100 (100%)"]


def test_a_resumed_stage_counts_from_its_checkpoint() -> None:
    out = io.StringIO()
    Progress("grpo", 10, start=4, stream=out).update()
    assert out.getvalue().startswith("[grpo] step 5/10 (50%)")


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), purge_orphaned_data=True)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_every_step_and_a_resume_replaces_the_later_ones(tmp_path: Path) -> None:
    settings = MetricsConfig(tensorboard=True)
    with MetricsLogger(tmp_path, "grpo", 4, 0, settings=settings, progress=False) as log:
        for step in (1, 2, 3):
            log.log({"step": step, "pass_rate": 0.25 * step, "reward/mean": 0.5})
    # Resumed from the step-2 checkpoint: step 3 is redone with another value, then step 4.
    with MetricsLogger(tmp_path, "grpo", 4, 2, settings=settings, progress=False) as log:
        log.log({"step": 3, "pass_rate": 0.7, "reward/mean": 0.5})
        log.log({"step": 4, "pass_rate": 0.8, "reward/mean": 0.5})
    scalars = _scalars(tmp_path / "tensorboard" / "grpo")
    assert scalars["pass_rate"] == [(1, 0.25), (2, 0.5), (3, pytest.approx(0.7)), (4, pytest.approx(0.8))]
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 3, 4]  # truncate_after's job


def test_a_stage_at_step_zero_starts_its_file_over(tmp_path: Path) -> None:
    path = tmp_path / "stages" / "sft" / "metrics.jsonl"
    for _ in range(2):
        with MetricsLogger(tmp_path, "sft", 2, 0, path=path, progress=False) as log:
            log.log({"step": 1, "sft/loss": 2.0})
    assert read_metrics(path) == [{"step": 1, "sft/loss": 2.0}]
    assert not (tmp_path / "tensorboard").exists()  # off unless the settings ask for it


def test_wandb_offline_run_in_the_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (it is in the dev extra)")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with MetricsLogger(tmp_path, "grpo", 2, 0, settings=MetricsConfig(tensorboard=False, wandb=True),
                       progress=False, config={"seed": 7}) as log:
        log.log({"step": 1, "pass_rate": 0.25, "reward/mean_custom_key": 0.5})
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    data = run_file.read_bytes()
    # wandb's binary log: the keys of the logged step are in it (wandb sync uploads it later).
    assert b"pass_rate" in data and b"reward/mean_custom_key" in data and run_file.name.endswith(f"{tmp_path.name}-grpo.wandb")


def test_wandb_without_the_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlplat.config.errors import ConfigError
    from rlplat.config.loader import load
    from rlplat.preflight import preflight

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    cfg, _ = load(["metrics.wandb=true"])
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    assert err.value.field == "metrics.wandb" and "metrics.wandb=false" in str(err.value)
