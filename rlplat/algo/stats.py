"""The one place where a step's training statistics are reduced: micro-batches -> ranks ->
optimizer steps -> the step's metrics line.

Learner ranks report raw per-micro-batch values (``rlplat.types.RankStepStats``); how each key
reduces follows from what it measures:

* ``loss/*``: each micro-batch's share of the global loss (``algo.losses.aggregate`` normalises by
  the whole optimizer step), so shares add up over micro-batches and ranks to the step's loss;
  optimizer steps are then averaged.
* ``*/max``: maxima.
* everything else: masked means over a micro-batch's tokens, averaged weighted by the micro-batch's
  sequences.
* ``grad_norm``: already global (DeepSpeed all-reduces it), so rank 0's, averaged over steps.

The first optimizer step sees the weights that generated the samples, so its ``approx_kl`` measures
the engine/learner numerical mismatch (FP8 vs BF16 on GPU, kernels on CPU): ``mismatch/approx_kl``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from rlplat.types import MicroStats, RankStepStats


def reduce_optimizer_step(ranks: Sequence[RankStepStats]) -> dict[str, float]:
    """One optimizer step's statistics over every rank's micro-batches."""
    micro: list[MicroStats] = [m for r in ranks for m in r.micro]
    rows = max(sum(m.rows for m in micro), 1)
    out: dict[str, float] = {}
    for key in micro[0].values:
        values = [m.values[key] for m in micro]
        if key.startswith("loss/"):
            out[key] = sum(values)
        elif key.endswith("/max"):
            out[key] = max(values)
        else:
            out[key] = sum(v * m.rows for v, m in zip(values, micro)) / rows
    out["grad_norm"] = ranks[0].grad_norm
    return out


def reduce_train_step(steps: Sequence[Sequence[RankStepStats]]) -> dict[str, float]:
    """A GRPO step's training metrics from its optimizer steps (each a list of rank reports)."""
    per_step = [reduce_optimizer_step(ranks) for ranks in steps]
    out = {k: (max if k.endswith("/max") else statistics.fmean)(s[k] for s in per_step) for k in per_step[0]}
    out["mismatch/approx_kl"] = per_step[0]["approx_kl"]
    out["optimizer_steps"] = float(len(per_step))
    return out
