"""The one place where a step's training statistics are reduced: micro-batches -> ranks ->
optimizer steps -> the step's metrics line.

Learner ranks report raw per-micro-batch values (``rlplat.types.RankStepStats``); how each key
reduces follows from what it measures:

* ``loss/*``: each micro-batch's share of the global loss (``algo.losses.aggregate`` normalises by
  the whole optimizer step), so shares add up over micro-batches and ranks to the step's loss;
  optimizer steps are then averaged.
* ``positions/*``: counts (real tokens, computed positions), summed likewise; the optimizer step
  adds ``positions/real_share``, the share of computed positions that are real tokens.
* ``*/max`` and ``*_max``: maxima.
* everything else: masked means over a micro-batch's tokens, averaged weighted by the micro-batch's
  sequences.
* ``grad_norm``: already global (DeepSpeed all-reduces it), so rank 0's, averaged over steps.
* ``time/train/*_s``: the slowest rank's seconds of each phase (``RankStepStats.seconds``), summed
  over optimizer steps: the learners' own share of the driver's ``time/train_s``.

``mismatch/*`` keys (the engine/learner mismatch, ``algo.mismatch``) come from the optimizer steps
that measured them: every one when the learners' old log-probs were recomputed, else the first
(which sees the weights that generated the samples).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence

from rlplat.types import MicroStats, RankStepStats


def reduce_optimizer_step(ranks: Sequence[RankStepStats]) -> dict[str, float]:
    """One optimizer step's statistics over every rank's micro-batches."""
    micro: list[MicroStats] = [m for r in ranks for m in r.micro]
    rows = max(sum(m.rows for m in micro), 1)
    out: dict[str, float] = {}
    for key in micro[0].values:
        values = [m.values[key] for m in micro]
        if key.startswith(("loss/", "positions/")):
            out[key] = sum(values)
        elif _is_max(key):
            out[key] = max(values)
        else:
            out[key] = sum(v * m.rows for v, m in zip(values, micro, strict=True)) / rows
    if "positions/computed" in out:
        out["positions/real_share"] = out["positions/real"] / max(out["positions/computed"], 1.0)
    out["grad_norm"] = ranks[0].grad_norm
    for phase in dict.fromkeys(p for r in ranks for p in r.seconds):
        out[f"time/train/{phase}_s"] = max(r.seconds.get(phase, 0.0) for r in ranks)
    return out


def reduce_train_step(steps: Sequence[Sequence[RankStepStats]]) -> dict[str, float]:
    """A GRPO step's training metrics from its optimizer steps (each a list of rank reports)."""
    per_step = [reduce_optimizer_step(ranks) for ranks in steps]
    keys = dict.fromkeys(k for s in per_step for k in s)
    out = {k: _reduction(k)(s[k] for s in per_step if k in s) for k in keys}
    out["optimizer_steps"] = float(len(per_step))
    return out


def _reduction(key: str) -> Callable[[Iterable[float]], float]:
    """How a key reduces over a GRPO step's optimizer steps."""
    if key.startswith("time/"):
        return sum
    return max if _is_max(key) else statistics.fmean


def _is_max(key: str) -> bool:
    return key.endswith(("/max", "_max"))
