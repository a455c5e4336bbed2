"""Pure functions of progressive batching: pass-rate buckets, the centre schedule, the Gaussian
target and the allocation of batch slots to buckets (paper, LN §5.1 and Fig. 6).

Buckets: ``num_buckets`` evenly spaced centres ``0, 1/(B-1), ..., 1``; a pass rate goes to the
nearest centre (ties upwards). With the default B = 9 the k/8 pass rates of an 8-sample prefilter
land exactly on the centres, and continuous rates measured during training are binned.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

Schedule = Literal["linear", "cosine"]
ScheduleOver = Literal["steps", "epoch"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def bucket_centres(num_buckets: int) -> FloatArray:
    """Evenly spaced bucket centres from 0 (hardest) to 1 (easiest)."""
    if num_buckets < 2:
        raise ValueError(f"num_buckets must be >= 2, got {num_buckets}")
    return np.linspace(0.0, 1.0, num_buckets)


def bucket_of(rates: npt.ArrayLike, num_buckets: int) -> IntArray:
    """Index of the nearest bucket centre for each pass rate in [0, 1] (ties go to the easier bucket).

    ``floor(x + 0.5)`` rather than ``round``: numpy rounds halves to even, which would send 3/16
    and 5/16 (with 8 buckets spaced 1/8) in opposite directions.
    """
    scaled = np.clip(np.asarray(rates, dtype=np.float64), 0.0, 1.0) * (num_buckets - 1)
    return np.floor(scaled + 0.5 + 1e-9).astype(np.int64)


def bucket_label(centre: float) -> str:
    """Metric-key label of a bucket, its centre pass rate: ``0.125``."""
    return f"{centre:.3f}"


def center_at(step: int, total_steps: int, start: float, end: float, schedule: Schedule = "linear") -> float:
    """Centre of the target Gaussian for batch ``step`` (0-based) of ``total_steps``.

    Moves from ``start`` at step 0 to ``end`` at step ``total_steps - 1`` and stays there after.
    """
    return interpolate_center(max(step, 0) / max(total_steps - 1, 1), start, end, schedule)


def interpolate_center(progress: float, start: float, end: float, schedule: Schedule = "linear") -> float:
    """Centre at ``progress`` in [0, 1] (clamped) of the way from ``start`` to ``end``.

    ``cosine`` eases in and out: it lingers at both ends and crosses the middle faster.
    """
    frac = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        frac = (1.0 - math.cos(math.pi * frac)) / 2.0
    elif schedule != "linear":
        raise ValueError(f"unknown schedule {schedule!r}; use 'linear' or 'cosine'")
    return start + (end - start) * frac


def resolve_center_range(known_rates: npt.ArrayLike, num_buckets: int, start: float | None,
                         end: float | None) -> tuple[float, float]:
    """Fill in ``None`` ends of the centre schedule from the data's pass rates.

    ``start=None`` is the centre of the easiest bucket holding a known rate, ``end=None`` that of the
    hardest, so the whole schedule is spent on difficulties the data has: with the paper's 0.75
    prefilter, 0.625 down to 0. Far beyond the data a renormalised Gaussian would collapse onto the
    nearest bucket (neighbours' weight ratio grows with the distance), so a fixed 1.0 start would
    give one-bucket batches for the first third of such a run. Without known rates, or when they all
    share one bucket, the full axis (1.0 to 0.0) is used, so the schedule still moves as training
    measures the prompts.
    """
    rates = np.asarray(known_rates, dtype=np.float64)
    rates = rates[~np.isnan(rates)]
    centres = bucket_centres(num_buckets)
    occupied = np.unique(bucket_of(rates, num_buckets))
    if occupied.size < 2:
        auto_start, auto_end = 1.0, 0.0
    else:
        auto_start, auto_end = float(centres[occupied[-1]]), float(centres[occupied[0]])
    return (auto_start if start is None else float(start)), (auto_end if end is None else float(end))


def target_distribution(centres: FloatArray, center: float, sigma: float,
                        available: npt.NDArray[np.bool_] | None = None) -> FloatArray:
    """Gaussian weights over bucket centres, normalised over the ``available`` buckets.

    Renormalising over non-empty buckets is our reading of "limited by how many samples remain":
    without it a centre over an empty region (1.0 after a 0.75 prefilter removed every easy prompt)
    would hand the whole batch to the leftover rule, which ignores difficulty. With it, such a centre
    means "the nearest difficulty still available". Computed in log space so that a narrow Gaussian
    far from every available bucket still gives the nearest one all the weight instead of 0/0.
    """
    mask = np.ones(len(centres), dtype=bool) if available is None else np.asarray(available, dtype=bool)
    if not mask.any():
        return np.zeros(len(centres))
    log_w = -((centres - center) ** 2) / (2.0 * sigma**2)
    log_w = np.where(mask, log_w, -np.inf)
    weights: FloatArray = np.exp(log_w - log_w[mask].max())
    normalised: FloatArray = weights / weights.sum()
    return normalised


def allocate(target: FloatArray, available: IntArray, n: int) -> IntArray:
    """Slots per bucket for a batch of ``n``: follow ``target``, capped by ``available``.

    1. Quotas ``n * target`` rounded by largest remainder (so they sum to ``n``; ties go to the
       bucket with more target weight, then the lower index).
    2. Each quota is capped by what its bucket still holds.
    3. Slots left over by the caps go one at a time to the buckets with the largest remaining
       pools (paper step 4), ties to more target weight, then the lower index.

    Raises:
        ValueError: if ``n`` exceeds the total available.
    """
    available = np.asarray(available, dtype=np.int64)
    if n > int(available.sum()):
        raise ValueError(f"cannot allocate {n} slots from {int(available.sum())} available prompts")
    counts = np.minimum(_largest_remainder(np.asarray(target, dtype=np.float64) * n, n), available)
    for _ in range(n - int(counts.sum())):
        remaining = available - counts
        counts[_argmax_tiebreak(remaining, target)] += 1
    return counts


def _largest_remainder(ideal: FloatArray, n: int) -> IntArray:
    base = np.floor(ideal + 1e-12).astype(np.int64)
    extra = n - int(base.sum())
    if extra > 0:
        # lexsort sorts by the last key first: biggest remainder, then biggest ideal, then index.
        order = np.lexsort((np.arange(len(ideal)), -ideal, -(ideal - base)))
        base[order[:extra]] += 1
    return base


def _argmax_tiebreak(values: IntArray, target: FloatArray) -> int:
    order = np.lexsort((np.arange(len(values)), -np.asarray(target), -values))
    return int(order[0])
