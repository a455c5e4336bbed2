"""The supervised training loop both supervised stages run (``warmstart``, ``sft``), and the
learning-rate schedule the distillation stage shares with it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from rlplat.algo.batching import split_for_ranks
from rlplat.algo.stats import reduce_optimizer_step
from rlplat.config.schema import Config
from rlplat.metrics import MetricsLogger
from rlplat.models.hf import copy_tokenizer
from rlplat.runtime.stage_actors import StageActors
from rlplat.types import TrainSequence


def decayed_lr(lr: float, step: int, steps: int) -> float:
    """Learning rate of ``step`` (0-based) of ``steps``: linear decay from ``lr`` to a tenth of it,
    which keeps the last steps of a short supervised pass from undoing the first ones."""
    return lr * (1.0 - 0.9 * step / max(steps - 1, 1))


def train_supervised(cfg: Config, model_path: str, seqs: Sequence[TrainSequence], out: Path,
                     metrics: MetricsLogger) -> dict[str, float]:
    """``sft.steps`` steps of ``sft.batch_size`` sequences drawn from ``seqs`` (seeded), learning
    rate decaying linearly from ``sft.lr`` to a tenth of it, on the DeepSpeed learners (packed rows
    with ``sft.pack_tokens``); writes a complete Hugging Face directory (weights and tokenizer) to
    ``out`` and returns the first and last steps' losses (``sft/loss_first``, ``sft/loss_last``).
    Each step's loss and learning rate go to ``metrics`` (closed here)."""
    s, rng = cfg.sft, random.Random(cfg.seed)
    losses: list[float] = []
    with metrics, StageActors(cfg, model_path, s.lr, rollout=False, scorer=False) as actors:
        learners = actors.learner_group
        for step in range(s.steps):
            lr = decayed_lr(s.lr, step, s.steps)
            batch = rng.sample(list(seqs), min(s.batch_size, len(seqs)))
            stats = reduce_optimizer_step(learners.sft_step(split_for_ranks(batch, learners.world_size), lr,
                                                            s.pack_tokens))
            losses.append(stats["loss/sft"])
            metrics.log({"step": step + 1, "sft/loss": losses[-1], "sft/lr": lr})
        learners.save_hf(str(out))
    copy_tokenizer(Path(model_path), out)
    return {"sft/loss_first": losses[0], "sft/loss_last": losses[-1]} if losses else {}
