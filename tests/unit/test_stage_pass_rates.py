"""Each stage's held-out pass rate (``grpo.eval_stages``, rlplat/stages/held_out.py): which figure a
manifest carries, the table the launcher prints, and the table in report.md."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config, GRPOConfig
from rlplat.config.validate import validate
from rlplat.report.document import load_run, markdown, stage_table
from rlplat.stages.base import StageManifest
from rlplat.stages.held_out import pass_rate_table, with_pass_rate

CFG = Config(grpo=GRPOConfig(eval_every=5, eval_prompts=32, eval_samples=4, eval_stages=True))


def test_a_stage_that_measured_its_model_keeps_its_figure() -> None:
    grpo = StageManifest("grpo", "/run/final_model", "/run/sft_model", metrics={"eval/pass_rate": 0.75})
    assert with_pass_rate(CFG, grpo, ()) == grpo


def test_a_stage_that_hands_its_model_on_repeats_the_figure_of_that_model() -> None:
    """The prefilter's output is its input: no engine starts for it (``measure`` would need Ray)."""
    sft = StageManifest("sft", "/run/sft_model", "/run/warm", metrics={"eval/pass_rate": 0.5})
    prefilter = StageManifest("prefilter", "/run/sft_model", "/run/sft_model", metrics={"prefilter/kept": 40})
    out = with_pass_rate(CFG, prefilter, (sft,))
    assert out.metrics == {"prefilter/kept": 40, "eval/pass_rate": 0.5}


def test_a_distillation_carries_its_teachers_figure_from_an_earlier_stage() -> None:
    """The teacher is a warm start's model, or a NAS stage's parent: no engine starts for it."""
    warm = StageManifest("warmstart", "/r/warm", "/r/init", metrics={"eval/pass_rate": 0.4})
    distill = StageManifest("distill", "/r/student", "/r/warm", artifacts={"teacher": "/r/warm"},
                            metrics={"eval/pass_rate": 0.3})
    assert with_pass_rate(CFG, distill, (warm,)).metrics == {"eval/pass_rate": 0.3, "eval/teacher_pass_rate": 0.4}
    nas = StageManifest("nas", "/r/child", "/r/parent", artifacts={"nas_parent": "/r/parent"},
                        metrics={"eval/pass_rate": 0.1, "nas/parent_pass_rate": 0.45})
    after_nas = replace(distill, input_model="/r/child", artifacts={"teacher": "/r/parent"})
    assert with_pass_rate(CFG, after_nas, (nas,)).metrics["eval/teacher_pass_rate"] == 0.45


def test_the_launcher_prints_one_row_per_stage() -> None:
    manifests = [StageManifest("warmstart", "/r/warm", "/r/init", metrics={"eval/pass_rate": 0.3125}),
                 StageManifest("distill", "/r/student", "/r/warm", artifacts={"teacher": "/r/warm"},
                               metrics={"eval/teacher_pass_rate": 0.3125}),
                 StageManifest("grpo", "/r/final", "/r/student", metrics={"eval/pass_rate": 0.8})]
    assert pass_rate_table(CFG, manifests).splitlines() == [
        "[rlplat] held-out pass rate by stage (32 prompts x 4 samples):",
        "  warmstart  0.312  /r/warm",
        "  distill    -  /r/student  (teacher 0.312: /r/warm)",
        "  grpo       0.800  /r/final",
    ]


def test_report_md_shows_the_stages_in_the_order_they_ran(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for stage, started, rate in (("grpo", 30.0, 0.9), ("warmstart", 10.0, 0.25), ("prefilter", 20.0, None),
                                 ("distill", 15.0, 0.125)):
        (run / "stages" / stage).mkdir(parents=True)
        metrics = {} if rate is None else {"eval/pass_rate": rate}
        metrics.update({"eval/teacher_pass_rate": 0.25} if stage == "distill" else {})
        (run / "stages" / stage / "manifest.json").write_text(json.dumps(
            asdict(StageManifest(stage, f"/m/{stage}", "/m/in", metrics=metrics, started_at=started))))
    (run / "stages" / "warmstart" / "metrics.jsonl").write_text(json.dumps({"step": 1, "sft/loss": 2.0}) + "\n")
    data = load_run(run)
    assert data.stage_pass_rates == (("warmstart", 0.25), ("distill's teacher", 0.25), ("distill", 0.125),
                                     ("grpo", 0.9))
    assert stage_table([data])[:5] == ["## Held-out pass rate by stage", "", "| stage | run |", "|---|---|",
                                       "| warmstart | 0.250 |"]
    assert "| grpo | 0.900 |" in markdown([data], [])
    assert stage_table([replace(data, stage_pass_rates=())]) == []


def test_eval_stages_needs_held_out_prompts() -> None:
    with pytest.raises(ConfigError) as err:
        validate(Config(grpo=GRPOConfig(eval_stages=True)))
    assert err.value.field == "grpo.eval_stages"
