"""Warm-start stage: a short supervised pass on the built-in synthetic task.

It exists so that the tiny default starts GRPO from a model whose pass rate is above zero (a
randomly initialised model never produces a correct sum, and GRPO has no signal at pass rate 0).
It trains on worked solutions of problems disjoint from the RL set, on the same DeepSpeed learners
GRPO uses, and writes a Hugging Face model directory for the next stage.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rlplat.algo.batching import split_for_ranks
from rlplat.algo.stats import reduce_optimizer_step
from rlplat.config.errors import ConfigError
from rlplat.data.synthetic import split_problems, teacher_solutions, to_prompt_items
from rlplat.models.hf import copy_tokenizer
from rlplat.runtime.stage_actors import StageActors
from rlplat.stages.base import StageContext, StageManifest
from rlplat.types import TrainSequence


class WarmStartStage:
    """Supervised warm start; its manifest names the warm-started model directory."""

    name = "warmstart"

    def run(self, ctx: StageContext) -> StageManifest:
        from tqdm import tqdm
        from transformers import AutoTokenizer

        cfg = ctx.cfg
        if cfg.data.source != "synthetic":
            raise ConfigError("stages", "the warmstart stage trains on the built-in synthetic task only.",
                              "remove 'warmstart' from stages, or set data.source=synthetic.")
        tokenizer = AutoTokenizer.from_pretrained(ctx.model_path)
        seqs = self._sequences(ctx, tokenizer)
        rng = random.Random(cfg.seed)
        out = ctx.run_dir / "warmstart_model"
        with StageActors(cfg, ctx.model_path, cfg.sft.lr, rollout=False, scorer=False) as actors:
            learners = actors.learner_group
            bar = tqdm(range(cfg.sft.steps), desc="warm start (SFT)", unit="step", dynamic_ncols=True, mininterval=2.0)
            for step in bar:
                # Linear decay to 10% keeps the last steps from undoing the first ones.
                lr = cfg.sft.lr * (1.0 - 0.9 * step / max(cfg.sft.steps - 1, 1))
                batch = rng.sample(seqs, cfg.sft.batch_size)
                stats = reduce_optimizer_step(learners.sft_step(split_for_ranks(batch, learners.world_size), lr,
                                                                cfg.timeouts.train_s))
                bar.set_postfix(loss=f"{stats['loss/sft']:.3f}", refresh=False)
            learners.save_hf(str(out), cfg.timeouts.checkpoint_s)
        copy_tokenizer(Path(ctx.model_path), out)
        return StageManifest(self.name, str(out), ctx.model_path)

    @staticmethod
    def _sequences(ctx: StageContext, tokenizer: Any) -> list[TrainSequence]:
        s = ctx.cfg.data.synthetic
        train, _ = split_problems(s.digits, s.num_train, s.num_rl, ctx.cfg.seed)
        items = to_prompt_items(train, tokenizer)
        eos = tokenizer.eos_token

        def encode(text: str) -> tuple[int, ...]:
            return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])

        solutions = teacher_solutions(train, s.teacher_accuracy, ctx.cfg.seed)
        return [TrainSequence(encode(it.text), encode(sol + eos), (), 0.0) for it, sol in zip(items, solutions)]
