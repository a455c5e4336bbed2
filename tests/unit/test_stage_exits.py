"""How a stage's Ray job ends: the exit codes, and the configuration error it hands the launcher
through ``stages/<name>/error.json`` (written by the job, read by the driver; no Ray started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config, ModelConfig
from rlplat.stages import STAGES
from rlplat.stages.base import StageContext, StageManifest, config_error_path
from rlplat.stages.exits import EXIT_CONFIG, read_config_error, run_guarded, write_config_error
from rlplat.stages.job_entry import run_job_stage
from rlplat.stages.ray_jobs import job_config_error

REFUSAL = ConfigError("sft.data", "rows 3 and 7 have no 'output'.", "give every row an output string.")


@STAGES.register("refusing_test_stage")
class RefusingStage:
    """A stage that refuses its configuration once it runs (as a stage reading its data would)."""

    name = "refusing_test_stage"

    def run(self, ctx: StageContext) -> StageManifest:
        raise REFUSAL


def _same(a: ConfigError, b: ConfigError) -> bool:
    return (a.field, a.problem, a.fix, str(a)) == (b.field, b.problem, b.fix, str(b))


def test_a_config_error_survives_the_round_trip_through_error_json(tmp_path: Path) -> None:
    path = tmp_path / "stages" / "sft" / "error.json"
    write_config_error(path, REFUSAL)
    record = json.loads(path.read_text())
    assert record == {"field": "sft.data", "problem": REFUSAL.problem, "fix": REFUSAL.fix, "message": str(REFUSAL),
                      "exit_code": EXIT_CONFIG}
    back = read_config_error(path)
    assert back is not None and _same(back, REFUSAL)
    assert read_config_error(tmp_path / "absent.json") is None


def test_a_stage_job_refusing_its_config_exits_2_and_the_driver_raises_the_same_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, name = tmp_path / "run", "refusing_test_stage"
    cfg = Config(stages=(name,), model=ModelConfig(path=str(tmp_path / "model")))
    # The job's side: what job_entry.main runs once it has joined the cluster.
    code, result = run_guarded(run, lambda: run_job_stage(cfg, run, name, False, "hash", "job-1"))
    assert (code, result) == (EXIT_CONFIG, None)
    assert f"rlplat: {REFUSAL}" in capsys.readouterr().err
    assert config_error_path(run, name) == run / "stages" / name / "error.json"
    # The driver's side: what run_stage_job raises when the job ends with exit code 2.
    raised = job_config_error(run, name, run / "stages" / name / "job.log")
    assert _same(raised, REFUSAL)


def test_a_job_that_exited_2_without_a_record_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "stages" / "grpo" / "job.log"
    err = job_config_error(tmp_path, "grpo", log)
    assert err.field == "stages" and "exit" in err.problem and str(log) in err.fix
