"""Warm-start stage: a short supervised pass on the built-in synthetic task.

It exists so that the tiny default starts GRPO from a model whose pass rate is above zero (a
randomly initialised model never produces a correct sum, and GRPO has no signal at pass rate 0).
It trains on worked solutions of problems disjoint from the RL set with the supervised loop of the
``sft`` stage (``rlplat.runtime.supervised``), on the same DeepSpeed learners GRPO uses, and writes
a Hugging Face model directory for the next stage.
"""

from __future__ import annotations

from rlplat.config.errors import ConfigError
from rlplat.data.synthetic import split_problems, teacher_solutions, worked_sequences
from rlplat.runtime.supervised import train_supervised
from rlplat.stages.base import SFT_BAR_KEYS, StageContext, StageManifest, stage_metrics


class WarmStartStage:
    """Supervised warm start; its manifest names the warm-started model directory."""

    name = "warmstart"
    config_sections = ("seed", "model", "learner", "cluster", "sft", "data.synthetic")

    def run(self, ctx: StageContext) -> StageManifest:
        from transformers import AutoTokenizer

        cfg = ctx.cfg
        if cfg.data.source != "synthetic":
            raise ConfigError("stages", "the warmstart stage trains on the built-in synthetic task only.",
                              "remove 'warmstart' from stages, or set data.source=synthetic.")
        out = ctx.run_dir / "warmstart_model"
        s = cfg.data.synthetic
        train, _ = split_problems(s, cfg.seed)
        seqs = worked_sequences(train, teacher_solutions(train, s.teacher_accuracy, cfg.seed),
                                AutoTokenizer.from_pretrained(ctx.model_path))
        metrics = train_supervised(cfg, ctx.model_path, seqs, out,
                                   stage_metrics(ctx, self.name, cfg.sft.steps, SFT_BAR_KEYS))
        return StageManifest(self.name, str(out), ctx.model_path, metrics=metrics)
