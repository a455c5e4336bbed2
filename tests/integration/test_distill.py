"""The distillation stage on real DeepSpeed learners with the teacher in its own Ray actors: a
warm-started teacher distilled into a new, smaller student, which SFT then trains (the
tiny_pipeline chain, shortened); continued pretraining on a text file (the same stage with the LM
loss, no teacher)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launch_helpers import launch

pytestmark = pytest.mark.slow


def _manifest(run: Path, stage: str) -> dict[str, Any]:
    return dict(json.loads((run / "stages" / stage / "manifest.json").read_text()))


def test_a_teacher_is_distilled_into_a_smaller_student_then_fine_tuned(reference_run: Path, tmp_path: Path) -> None:
    """The tiny_pipeline chain, shortened: warm-started teacher (the reference run's warm start) ->
    distill -> sft (toggle, packed rows). One learner and one teacher: the subject is the stages and
    their hand-over, not the ranks (test_your_model's SFT trains two ranks; GRPO after SFT, on packed rows with
    the toggle measured, is the monitored run's: test_curriculum_grpo)."""
    run, teacher_dir = tmp_path / "run", reference_run / "warmstart_model"
    rc, out = launch(run, f"model.path={teacher_dir}", "stages=[distill,sft]", "distill.student=new",
                     "distill.steps=40", "distill.batch_size=32", "distill.eval_rows=16", "sft.source=synthetic",
                     "sft.eval_rows=8", "sft.pack_tokens=96", "cluster.devices_per_node=1")
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
    # Every model directory a stage wrote is complete (the next stage's model.path; vLLM loaded the
    # distill output above, for SFT's toggle measurement).
    for model in (teacher_dir, run / "distill_model", run / "sft_model"):
        assert (model / "config.json").is_file() and (model / "generation_config.json").is_file(), model
        assert AutoTokenizer.from_pretrained(model).chat_template, model


def test_continued_pretraining_is_the_same_stage_with_the_lm_loss(tmp_path: Path) -> None:
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": f"{a} plus {a + 1} is {2 * a + 1}.", "id": a}) + "\n"
                            for a in range(120)))
    run = tmp_path / "run"
    rc, out = launch(run, "stages=[distill]", f"distill.data={data}", "distill.kl_weight=0", "distill.lm_weight=1",
                     "distill.steps=30", "distill.batch_size=32", "distill.eval_rows=20", "cluster.devices_per_node=1")
    assert rc == 0, out[-3000:]
    metrics = _manifest(run, "distill")["metrics"]
    assert metrics["distill/loss_last"] < 0.7 * metrics["distill/loss_first"]
    assert "distill/heldout_lm_loss" in metrics and "distill/heldout_kl" not in metrics  # no teacher ran
    assert "continued pretraining" in out
