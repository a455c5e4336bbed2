"""Distillation stage: a student learns a teacher's next-token distributions (and, optionally, its
hidden states), or continues pretraining on raw text (LN §2-3, the Puzzle uptraining).

The teacher runs in Ray actors of its own (``rlplat.learner.teacher``) in the slots the placement
plan gives rollout engines; the student trains on the DeepSpeed learners. Each step: the teachers
score the step's shards, their distributions go to the learners through the object store, every
rank takes one optimizer step on ``distill.kl_weight * KL + cosine_weight * cosine + lm_weight *
LM`` (``rlplat.algo.distill``). Afterwards the held-out texts give ``distill/heldout_lm_loss``
(student), ``distill/teacher_heldout_lm_loss`` and ``distill/heldout_kl`` in the manifest's
metrics. Writes ``distill_model/``, a complete Hugging Face directory, for the next stage.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from rlplat.algo.batching import split_for_ranks
from rlplat.algo.stats import reduce_optimizer_step
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config
from rlplat.data.synthetic import solution, split_problems, teacher_solutions, worked_sequences
from rlplat.data.text import read_texts, text_sequences
from rlplat.learner.teacher import TeacherSpec
from rlplat.models.hf import copy_tokenizer
from rlplat.runtime.stage_actors import StageActors
from rlplat.runtime.supervised import decayed_lr
from rlplat.stages.base import NAS_PARENT, TEACHER, StageContext, StageManifest, stage_metrics
from rlplat.types import TrainSequence

log = logging.getLogger(__name__)


class DistillStage:
    """Distillation (or continued pretraining) into ``distill.student``."""

    name = "distill"
    config_sections = ("seed", "model", "learner", "cluster", "distill", "data.synthetic")

    def preflight(self, cfg: Config) -> None:
        """Before Ray (``rlplat.stages.checks``): teacher and student directories, their shared
        vocabulary where both are known, the text file, and a new student's head size."""
        from rlplat.data.datasets import DataError
        from rlplat.data.text import check_text_file
        from rlplat.stages.checks import check_cpu_head_sizes, check_model_dir

        d = cfg.distill
        check_model_dir("distill.teacher_path", d.teacher_path, "point it at the teacher's model directory, or "
                        "set it to null to distil from the stage's input model.")
        if d.student not in ("input", "new"):
            check_model_dir("distill.student", d.student, "use input, new, or a model directory.")
        if d.student == "new":
            student = None  # built from the teacher's vocabulary when the stage starts
        elif d.student == "input":
            # Known before Ray only when distillation is the first stage and starts from model.path.
            student = cfg.model.path if cfg.stages[0] == self.name else None
        else:
            student = d.student
        if d.teacher_path and student:
            check_same_vocabulary(d.teacher_path, student)
        if d.data is not None:
            try:
                check_text_file(d.data, d.text_field, d.eval_rows)
            except DataError as err:
                raise ConfigError("distill.data", str(err), f"correct the file: every row needs a non-empty "
                                  f"'{d.text_field}' string (distill.text_field).") from err
        if d.student == "new":
            check_cpu_head_sizes(cfg, [("distill.student_shape", d.student_shape)])

    def run(self, ctx: StageContext) -> StageManifest:
        from transformers import AutoTokenizer

        cfg, d = ctx.cfg, ctx.cfg.distill
        teacher_path = teacher_of(ctx)
        student_path = student_model(cfg, ctx.model_path, teacher_path, ctx.run_dir)
        check_same_vocabulary(teacher_path, student_path)
        train, held_out = distill_sequences(cfg, AutoTokenizer.from_pretrained(student_path))
        use_teacher = d.kl_weight > 0 or d.cosine_weight > 0 or d.teacher_path is not None
        spec = TeacherSpec(teacher_path, cfg.model.dtype, cfg.cluster.device, d.temperature, d.cosine_weight > 0,
                           cfg.learner.micro_batch_size, cfg.learner.cpu_threads) if use_teacher else None
        out, rng, losses = ctx.run_dir / "distill_model", random.Random(cfg.seed), list[float]()
        log.info("%s: %d steps of %s into %s", self.name, d.steps,
                 f"distillation from {teacher_path}" if use_teacher else "continued pretraining (LM loss, no teacher)",
                 student_path)
        with stage_metrics(ctx, self.name, d.steps, (("distill/loss", "loss"),)) as steps, \
                StageActors(cfg, student_path, d.lr, rollout=False, scorer=False, teacher=spec) as actors:
            learners, teachers = actors.learner_group, actors.teachers
            for step in range(d.steps):
                lr = decayed_lr(d.lr, step, d.steps)
                shards = split_for_ranks(rng.sample(train, min(d.batch_size, len(train))), learners.world_size)
                refs, acks = teachers.forward(shards) if teachers and d.kl_weight + d.cosine_weight > 0 else (None, [])
                stats = reduce_optimizer_step(learners.distill_step(shards, refs, lr, d, also_wait=acks))
                losses.append(stats["loss/distill"])
                steps.log({"step": step + 1, "distill/loss": losses[-1], "distill/lr": lr})
            metrics = {"distill/loss_first": losses[0], "distill/loss_last": losses[-1]} if losses else {}
            if held_out:
                metrics.update(held_out_metrics(cfg, actors, held_out))
            learners.save_hf(str(out))
        copy_tokenizer(Path(student_path), out)
        artifacts = {TEACHER: teacher_path} if use_teacher else {}
        return StageManifest(self.name, str(out), ctx.model_path, artifacts=artifacts, metrics=metrics)


def teacher_of(ctx: StageContext) -> str:
    """The teacher's model directory: ``distill.teacher_path``; else, after a NAS stage, the parent
    it searched from (Puzzle's global distillation of the child); else the stage's input model."""
    return ctx.cfg.distill.teacher_path or ctx.artifact(NAS_PARENT) or ctx.model_path


def student_model(cfg: Config, input_model: str, teacher_path: str, run_dir: Path) -> str:
    """The student's model directory: the stage's input model, a new Llama of
    ``distill.student_shape`` with the teacher's vocabulary, or the directory ``distill.student``."""
    from rlplat.models.tiny import build_student

    d = cfg.distill
    if d.student == "input":
        return input_model
    if d.student == "new":
        return str(build_student(teacher_path, run_dir / "distill_student", d.student_shape, seed=cfg.seed))
    return d.student


def check_same_vocabulary(teacher_path: str, student_path: str) -> None:
    """Teacher and student may differ in shape, not in vocabulary (KL compares distributions over
    the same tokens); raises ``ConfigError`` naming both."""
    from transformers import AutoTokenizer

    sizes = [json.loads((Path(p) / "config.json").read_text()).get("vocab_size") for p in (teacher_path, student_path)]
    vocabs = [AutoTokenizer.from_pretrained(p).get_vocab() for p in (teacher_path, student_path)]
    if sizes[0] != sizes[1] or vocabs[0] != vocabs[1]:
        raise ConfigError("distill.student", f"the teacher ({teacher_path}, vocabulary {sizes[0]}) and the student "
                          f"({student_path}, vocabulary {sizes[1]}) do not share a vocabulary"
                          f"{'' if sizes[0] != sizes[1] else ' (same size, different tokens)'}.",
                          "distil into a student with the teacher's tokenizer (distill.student=new builds one).")


def distill_sequences(cfg: Config, tokenizer: Any) -> tuple[list[TrainSequence], list[TrainSequence]]:
    """Training and held-out sequences: the file's texts (the last ``eval_rows`` held out), or the
    built-in task's worked solutions as the warm start sees them (warm-start problems, answers
    slipping at ``1 - data.synthetic.teacher_accuracy``), held-out problems' right ones for evaluation."""
    d = cfg.distill
    if d.data is not None:
        seqs = text_sequences(read_texts(d.data, d.text_field), tokenizer, d.max_tokens)
        return seqs[:len(seqs) - d.eval_rows], seqs[len(seqs) - d.eval_rows:]
    s = cfg.data.synthetic
    train, rl = split_problems(s, cfg.seed)
    held = rl[:d.eval_rows]
    return (worked_sequences(train, teacher_solutions(train, s.teacher_accuracy, cfg.seed), tokenizer),
            worked_sequences(held, [solution(p) for p in held], tokenizer))


def held_out_metrics(cfg: Config, actors: StageActors, held_out: list[TrainSequence]) -> dict[str, float]:
    """The student's loss terms on the held-out texts (no update), and the teacher's own loss."""
    learners, teachers = actors.learner_group, actors.teachers
    seqs = held_out[:len(held_out) - len(held_out) % learners.world_size]
    if not seqs:
        return {}
    shards = split_for_ranks(seqs, learners.world_size)
    refs, acks = teachers.forward(shards) if teachers else (None, [])
    stats = reduce_optimizer_step(learners.distill_step(shards, refs, 0.0, cfg.distill, train=False,
                                                        also_wait=acks))
    out = {"distill/heldout_lm_loss": stats["loss/lm"]}
    if teachers is not None:
        out["distill/heldout_kl"] = stats["loss/kl"]
        out["distill/teacher_heldout_lm_loss"] = teachers.lm_loss(shards)
    return out
