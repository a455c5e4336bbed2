"""The held-out pass rate of each stage's output model: a pipeline's progress as one table.

With ``grpo.eval_stages`` every stage's manifest carries ``eval/pass_rate``: GRPO's held-out
evaluation (``rlplat.runtime.evaluation.HeldOutEval``: the same ``grpo.eval_prompts`` prompts,
``grpo.eval_samples`` samples each, the same seeds and reward; on the built-in task the prompts carry
"detailed thinking on") of the model the stage wrote. A stage that measures it itself keeps its own
(GRPO's last evaluation, the NAS child's); a stage that hands its input model on unchanged (the
prefilter) repeats the figure of the model it was given; any other stage's model gets an engine
started for it alone (one engine start per such stage). The launcher prints the table at the end
of a multi-stage run, and report.md shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from rlplat.config.schema import Config
from rlplat.runtime.evaluation import HeldOutEval
from rlplat.runtime.prompts import load_prompt_sets
from rlplat.runtime.stage_actors import StageActors
from rlplat.stages.base import StageManifest

PASS_RATE = "eval/pass_rate"


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
    """``manifest`` with ``eval/pass_rate`` (see the module docstring); as it is when it has one."""
    if PASS_RATE in manifest.metrics:
        return manifest
    same = [m for m in upstream if m.model_path == manifest.model_path and PASS_RATE in m.metrics]
    rate = same[-1].metrics[PASS_RATE] if same else measure(cfg, manifest.model_path)
    return manifest if rate is None else replace(manifest, metrics={**manifest.metrics, PASS_RATE: rate})


def pass_rate_table(cfg: Config, manifests: Sequence[StageManifest]) -> str:
    """The lines the launcher prints at the end of a multi-stage run (pure)."""
    g = cfg.grpo
    width = max(len(m.stage) for m in manifests)
    lines = [f"[rlplat] held-out pass rate by stage ({g.eval_prompts} prompts x {g.eval_samples} samples):"]
    for m in manifests:
        rate = m.metrics.get(PASS_RATE)
        lines.append(f"  {m.stage:<{width}}  {'-' if rate is None else f'{rate:.3f}'}  {m.model_path}")
    return "\n".join(lines)
