"""The distillation stage on real DeepSpeed learners with the teacher in its own Ray actors: a
warm-started teacher distilled into a new, smaller student, which SFT then trains (the
tiny_pipeline chain, shortened); continued pretraining on a text file (the same stage with the LM
loss, no teacher)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from launch_helpers import launch
from rlplat.stages.base import StageManifest

pytestmark = pytest.mark.slow


def _manifest(run: Path, stage: str) -> dict[str, Any]:
    return dict(json.loads((run / "stages" / stage / "manifest.json").read_text()))


def test_a_teacher_is_distilled_into_a_smaller_student_then_fine_tuned(reference_run: Path, tmp_path: Path) -> None:
    """The tiny_pipeline chain, shortened: warm-started teacher (the reference run's warm start) ->
    distill -> sft (toggle, packed rows), each stage's held-out pass rate reported beside the
    teacher's (the full-length figures: docs/benchmarks.md, "A student lifted past its teacher").
    One learner and one teacher: the subject is the stages and their hand-over, not the ranks
    (test_your_model's SFT trains two ranks; GRPO after SFT, on packed rows with the toggle
    measured, is the monitored run's: test_curriculum_grpo)."""
    run, teacher_dir = tmp_path / "run", reference_run / "warmstart_model"
    rc, out = launch(run, f"model.path={teacher_dir}", "stages=[distill,sft]", "distill.student=new",
                     "distill.steps=40", "distill.batch_size=32", "distill.eval_rows=16", "sft.source=synthetic",
                     "sft.eval_rows=8", "sft.pack_tokens=96", "cluster.devices_per_node=1",
                     "grpo.eval_stages=true", "grpo.eval_prompts=8", "grpo.eval_samples=2", "grpo.eval_every=1")
    assert rc == 0, out[-3000:]
    m = _manifest(run, "distill")
    metrics = m["metrics"]
    assert metrics["distill/loss_last"] < 0.7 * metrics["distill/loss_first"]
    assert {"distill/heldout_kl", "distill/heldout_lm_loss", "distill/teacher_heldout_lm_loss"} <= set(metrics)
    assert m["input_model"] == str(teacher_dir) and m["model_path"] == str(run / "distill_model")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    student = AutoModelForCausalLM.from_pretrained(m["model_path"])
    teacher = AutoModelForCausalLM.from_pretrained(m["input_model"])
    assert student.config.hidden_size == 64 < teacher.config.hidden_size  # distill.student_shape's default
    assert len(AutoTokenizer.from_pretrained(m["model_path"])) == student.config.vocab_size
    # SFT starts from the student and measures the toggle in both modes.
    assert _manifest(run, "sft")["input_model"] == m["model_path"]
    figures = _manifest(run, "sft")["metrics"]
    for key in ("toggle/on_compliance", "toggle/off_compliance", "toggle/on_pass_rate", "toggle/off_pass_rate"):
        assert 0.0 <= figures[key] <= 1.0, key
    assert "stage sft done" in out and "toggle/on_compliance" in out
    # Each stage's model and the teacher on the same held-out prompts (grpo.eval_stages): the student
    # beside its teacher in the launcher's table and in report.md; SFT's figure from its toggle engines.
    rates = {stage: _manifest(run, stage)["metrics"] for stage in ("distill", "sft")}
    teacher, student, tuned = (rates["distill"]["eval/teacher_pass_rate"], rates["distill"]["eval/pass_rate"],
                               rates["sft"]["eval/pass_rate"])
    assert all(0.0 <= r <= 1.0 for r in (teacher, student, tuned))
    table = out[out.index("held-out pass rate by stage (8 prompts x 2 samples)"):].splitlines()[1:3]
    assert table == [f"  distill  {student:.3f}  {run / 'distill_model'}  (teacher {teacher:.3f}: {teacher_dir})",
                     f"  sft      {tuned:.3f}  {run / 'sft_model'}"]
    report = (run / "report.md").read_text()
    assert f"| distill's teacher | {teacher:.3f} |" in report and f"| distill | {student:.3f} |" in report
    # Every model directory a stage wrote is complete (the next stage's model.path; vLLM loaded the
    # distill output above, for SFT's toggle measurement).
    for model in (teacher_dir, run / "distill_model", run / "sft_model"):
        assert (model / "config.json").is_file() and (model / "generation_config.json").is_file(), model
        assert AutoTokenizer.from_pretrained(model).chat_template, model


def test_continued_pretraining_is_the_same_stage_with_the_lm_loss(ray_local: None, tiny_model: str,
                                                                   tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The stage run in-process on the session's Ray (what the launcher's driver runner calls)."""
    from rlplat.config.loader import load
    from rlplat.stages.pipeline import run_stage

    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": f"{a} plus {a + 1} is {2 * a + 1}.", "id": a}) + "\n"
                            for a in range(120)))
    run = tmp_path / "run"
    cfg, _ = load([f"model.path={tiny_model}", "stages=[distill]", f"distill.data={data}", "distill.kl_weight=0",
                   "distill.lm_weight=1", "distill.steps=30", "distill.batch_size=32", "distill.eval_rows=20",
                   "cluster.devices_per_node=1"])
    with caplog.at_level(logging.INFO, logger="rlplat"):
        manifest = run_stage(cfg, run, "distill", False, "")
    assert manifest == StageManifest(**_manifest(run, "distill"))
    metrics = manifest.metrics
    assert metrics["distill/loss_last"] < 0.7 * metrics["distill/loss_first"]
    assert "distill/heldout_lm_loss" in metrics and "distill/heldout_kl" not in metrics  # no teacher ran
    assert manifest.artifacts == {} and "continued pretraining" in caplog.text
