"""A stage declares its own launch-time checks (``preflight(cfg)``), and the launcher's preflight
runs them: a plugin stage's check stops the launch with its own error, before Ray starts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rlbase import FieldError
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config
from rlplat.preflight import preflight
from rlplat.stages import STAGES
from rlplat.stages.base import StageContext, StageManifest
from rlplat.stages.checks import starts_engines

CHECKED: list[str] = []


@STAGES.register("preflighted_test_stage")
class PreflightedStage:
    """A plugin stage that reads a file named in ``data.file`` and checks it at launch."""

    name = "preflighted_test_stage"

    def preflight(self, cfg: Config) -> None:
        CHECKED.append(self.name)
        if not Path(str(cfg.data.file.path)).is_file():
            raise ConfigError("data.file.path", f"{cfg.data.file.path} does not exist.", "point it at your file.")

    def run(self, ctx: StageContext) -> StageManifest:
        return StageManifest(self.name, ctx.model_path, ctx.model_path)


@STAGES.register("field_error_test_stage")
class FieldErrorStage:
    """A plugin stage whose check raises rlbase's plain ``FieldError``."""

    name = "field_error_test_stage"

    def preflight(self, cfg: Config) -> None:
        raise FieldError("my_section.rows", "no rows.", "add rows.")

    def run(self, ctx: StageContext) -> StageManifest:
        return StageManifest(self.name, ctx.model_path, ctx.model_path)


def _cfg(tmp_path: Path, *stages: str) -> Config:
    cfg = Config(stages=stages)
    return replace(cfg, data=replace(cfg.data, file=replace(cfg.data.file, path=str(tmp_path / "rows.jsonl"))))


def test_a_plugin_stages_own_check_runs_at_preflight(tmp_path: Path) -> None:
    CHECKED.clear()
    cfg = _cfg(tmp_path, "warmstart", "preflighted_test_stage")
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    assert err.value.field == "data.file.path" and "does not exist" in str(err.value)
    (tmp_path / "rows.jsonl").write_text("{}\n")
    preflight(cfg)
    assert CHECKED == ["preflighted_test_stage"] * 2


def test_a_dry_run_skips_the_stages_checks(tmp_path: Path) -> None:
    """A dry run's paths usually name another machine's files (here: no file named at all)."""
    CHECKED.clear()
    preflight(replace(_cfg(tmp_path, "preflighted_test_stage"), dry_run=True))
    assert CHECKED == []


def test_a_dry_run_checks_the_files_when_every_one_is_here(tmp_path: Path) -> None:
    """A row without its answer stops a dry run whose files are all on this machine (exit 2 before
    anything starts, as a launch would); beside a model directory of another machine, nothing is read."""
    (tmp_path / "rows.jsonl").write_text('{"question": "What is 1 + 1?"}\n')
    cfg = _cfg(tmp_path, "grpo")
    cfg = replace(cfg, dry_run=True, data=replace(cfg.data, source="file"))
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    assert err.value.field.startswith("data.file") and "answer" in str(err.value)
    preflight(replace(cfg, model=replace(cfg.model, path="/cluster/models/m")))


def test_a_field_error_from_a_stage_check_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        preflight(_cfg(tmp_path, "field_error_test_stage"))
    assert err.value.field == "my_section.rows"


def test_the_engine_stages_say_so() -> None:
    assert starts_engines(Config(stages=("warmstart", "grpo")))
    assert starts_engines(Config(stages=("sft",))) and starts_engines(Config(stages=("prefilter",)))
    assert not starts_engines(Config(stages=("warmstart", "distill", "nas", "preflighted_test_stage")))


def test_a_sharded_zero3_start_needs_safetensors_weights(tmp_path: Path) -> None:
    """A model directory of .bin weights cannot be built sharded: refused before Ray, naming the field."""
    import torch
    from safetensors.torch import load_file

    from rlplat.models.tiny import build_tiny_llama

    model = build_tiny_llama(tmp_path / "m")
    state = load_file(str(model / "model.safetensors"))
    torch.save(state, model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    cfg = Config(stages=("grpo",))
    cfg = replace(cfg, model=replace(cfg.model, path=str(model)), learner=replace(cfg.learner, zero_stage=3))
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    assert err.value.field == "learner.sharded_init" and "sharded_init=false" in str(err.value)
    preflight(replace(cfg, learner=replace(cfg.learner, sharded_init=False)))  # whole, then sharded: allowed
