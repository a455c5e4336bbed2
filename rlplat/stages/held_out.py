"""The held-out pass rate of each stage's output model: a pipeline's progress as one table.

With ``grpo.eval_stages`` every stage's manifest carries ``eval/pass_rate``: GRPO's held-out
evaluation (``rlplat.runtime.evaluation.HeldOutEval``: the same ``grpo.eval_prompts`` prompts,
``grpo.eval_samples`` samples each, the same seeds and reward; on the built-in task the prompts carry
"detailed thinking on") of the model the stage wrote. A stage that measures it itself keeps its own
(GRPO's last evaluation, the NAS child's, SFT's on its toggle engines); a stage that hands its input
model on unchanged (the prefilter) repeats the figure of the model it was given; any other stage's
model gets an engine started for it alone (one engine start per such stage). A distillation stage's
manifest also carries its teacher's figure (``eval/teacher_pass_rate``): an earlier stage's when
the teacher is an earlier stage's model (a warm start, a NAS parent), else measured. The launcher
prints the table at the end of a multi-stage run, and report.md shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from rlplat.config.schema import Config
from rlplat.runtime.evaluation import HeldOutEval
from rlplat.runtime.prompts import load_prompt_sets
from rlplat.runtime.stage_actors import StageActors
from rlplat.stages.base import NAS_PARENT, TEACHER, StageManifest

PASS_RATE = "eval/pass_rate"
TEACHER_PASS_RATE = "eval/teacher_pass_rate"
PARENT_PASS_RATE = "nas/parent_pass_rate"  # a NAS stage's figure for its parent (``NAS_PARENT``)


def held_out_pass_rate(cfg: Config, model_path: str, actors: StageActors) -> float | None:
    """GRPO's held-out evaluation of ``model_path``, served by ``actors`` (None: no prompt held out)."""
    from transformers import AutoTokenizer

    _, held_out = load_prompt_sets(cfg, AutoTokenizer.from_pretrained(model_path))
    if not len(held_out):
        return None
    return HeldOutEval(cfg, held_out).run(actors.rollout_group, actors.reward_scorer)[PASS_RATE]


def measure(cfg: Config, model_path: str) -> float | None:
    """``held_out_pass_rate`` of ``model_path`` on engines started for it (and a reward scorer)."""
    with StageActors(cfg, model_path, 0.0, learners=False) as actors:
        return held_out_pass_rate(cfg, model_path, actors)


def with_pass_rate(cfg: Config, manifest: StageManifest, upstream: Sequence[StageManifest]) -> StageManifest:
    """``manifest`` with ``eval/pass_rate`` and, for a distillation, ``eval/teacher_pass_rate`` (see
    the module docstring); a figure it already has is kept."""
    metrics = dict(manifest.metrics)
    wanted = {PASS_RATE: manifest.model_path, TEACHER_PASS_RATE: manifest.artifacts.get(TEACHER)}
    for key, path in wanted.items():
        if path is not None and key not in metrics:
            rate = known_rate(path, upstream)
            rate = measure(cfg, path) if rate is None else rate
            metrics.update({} if rate is None else {key: rate})
    return manifest if metrics == manifest.metrics else replace(manifest, metrics=metrics)


def known_rate(model_path: str, upstream: Sequence[StageManifest]) -> float | None:
    """The latest figure an earlier stage recorded for ``model_path``: its output model's, or a NAS
    stage's parent's (pure; None: none)."""
    for m in reversed(upstream):
        if m.model_path == model_path and PASS_RATE in m.metrics:
            return m.metrics[PASS_RATE]
        if m.artifacts.get(NAS_PARENT) == model_path and PARENT_PASS_RATE in m.metrics:
            return m.metrics[PARENT_PASS_RATE]
    return None


def pass_rate_table(cfg: Config, manifests: Sequence[StageManifest]) -> str:
    """The lines the launcher prints at the end of a multi-stage run (pure)."""
    g = cfg.grpo
    width = max(len(m.stage) for m in manifests)
    lines = [f"[rlplat] held-out pass rate by stage ({g.eval_prompts} prompts x {g.eval_samples} samples):"]
    for m in manifests:
        rate, teacher = m.metrics.get(PASS_RATE), m.metrics.get(TEACHER_PASS_RATE)
        versus = "" if teacher is None else f"  (teacher {teacher:.3f}: {m.artifacts.get(TEACHER)})"
        lines.append(f"  {m.stage:<{width}}  {'-' if rate is None else f'{rate:.3f}'}  {m.model_path}{versus}")
    return "\n".join(lines)
