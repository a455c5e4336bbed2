"""Bookkeeping shared by the built-in curricula, by composition: uid <-> index, the pass-rate store,
a vector of current pass rates, retirement, and the per-step difficulty metrics."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from curricula.buckets import bucket_centres, bucket_label, bucket_of
from curricula.drift import DriftModel
from curricula.outcome import GroupOutcome
from curricula.store import PassRateStore, PromptStats

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RetireRule:
    """A prompt retires (is never sampled again) once the policy's pass rate over its most recent
    training groups holding at least ``min_attempts`` samples is >= ``threshold``.

    Only training groups count: a reference model solving a prompt offline says little about the
    policy, and the prefilter is the tool for that case.
    """

    threshold: float
    min_attempts: int

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"retire_threshold must be in (0, 1] or None (off), got {self.threshold}")
        if self.min_attempts < 1:
            raise ValueError(f"min_attempts_to_retire must be >= 1, got {self.min_attempts}")

    def is_retired(self, stats: PromptStats) -> bool:
        """True when the recent window exists and reaches the threshold."""
        rate = stats.recent_pass_rate(self.min_attempts)
        return rate is not None and rate >= self.threshold - 1e-9


def uids_digest(uids: Sequence[str]) -> str:
    """Short fingerprint of the dataset's uid list, to refuse a checkpoint from another dataset."""
    h = hashlib.sha256()
    for uid in uids:
        h.update(uid.encode("utf-8") + b"\0")
    return h.hexdigest()[:16]


class PromptTracker:
    """uid <-> index, current pass rates (NaN: unknown) and the retired set of one dataset.

    Args:
        uids: The dataset's prompt ids; index ``i`` is ``uids[i]``. Must be unique and non-empty.
        store: Pass-rate store to read and update (a fresh one if None). The tracker owns it.
        retire: Retirement rule, or None to never retire.
        drift: With a ``DriftModel``, ``rates`` are the latest rates moved by the policy's drift
            since each was measured (``curricula.drift``); without, the latest rates as measured.
    """

    def __init__(self, uids: Sequence[str], store: PassRateStore | None, retire: RetireRule | None,
                 drift: DriftModel | None = None) -> None:
        self.uids: tuple[str, ...] = tuple(str(u) for u in uids)
        if not self.uids:
            raise ValueError("a curriculum needs at least one prompt (uids is empty)")
        self.index: dict[str, int] = {uid: i for i, uid in enumerate(self.uids)}
        if len(self.index) != len(self.uids):
            raise ValueError(f"uids must be unique; {len(self.uids) - len(self.index)} duplicates found")
        self.store = store if store is not None else PassRateStore()
        self.retire = retire
        self.retired = np.zeros(len(self.uids), dtype=bool)
        self.drift = drift
        self._latest = self._rates_from_store()
        self._warned_all_retired = False

    def __len__(self) -> int:
        return len(self.uids)

    @property
    def rates(self) -> FloatArray:
        """Each prompt's current pass rate (NaN: unknown); see ``drift``."""
        return self._latest if self.drift is None else self.drift.adjust(self._latest)

    def _rates_from_store(self) -> FloatArray:
        """The latest rates; a drift model's measurements are (re)seeded from the same evidence."""
        rates = np.full(len(self.uids), np.nan)
        for i, uid in enumerate(self.uids):
            stats = self.store.get(uid)
            if stats is None or stats.latest_pass_rate is None:
                continue
            rates[i] = stats.latest_pass_rate
            if self.drift is not None:  # the latest evidence: the last training group, else the offline counts
                attempts, successes = stats.recent[-1] if stats.recent else (stats.attempts, stats.successes)
                self.drift.measure(i, successes, attempts)
        return rates

    def observe(self, outcomes: Iterable[GroupOutcome]) -> None:
        """Update the store, the pass-rate vector and the retired set from scored groups.

        Outcomes for uids outside the dataset are recorded in the store only.
        """
        seen: list[tuple[int, int, int]] = []
        for outcome in outcomes:
            stats = self.store.add(outcome.uid, outcome.n, outcome.successes, training=True)
            i = self.index.get(outcome.uid)
            if i is None:
                continue
            self._latest[i] = stats.latest_pass_rate
            seen.append((i, outcome.successes, outcome.n))
            if self.retire is not None and self.retire.is_retired(stats):
                self.retired[i] = True
        if self.drift is not None:
            self.drift.observe(seen)

    def active(self) -> BoolArray:
        """Mask of prompts that may be sampled: the non-retired ones, or all if all are retired.

        Retiring everything would stop training; instead retirement is suspended, with a warning.
        """
        active = ~self.retired
        if active.any():
            return active
        if not self._warned_all_retired:
            warnings.warn("curriculum: every prompt is retired; sampling all of them again", stacklevel=3)
            self._warned_all_retired = True
        return np.ones(len(self.uids), dtype=bool)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: dataset fingerprint, retired indices and the store."""
        return {
            "num_prompts": len(self.uids),
            "uids_digest": uids_digest(self.uids),
            "retired": np.flatnonzero(self.retired).tolist(),
            "store": self.store.state_dict(),
            **({"drift": self.drift.state_dict()} if self.drift is not None else {}),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``; refuses state saved for a different uid list."""
        if state["num_prompts"] != len(self.uids) or state["uids_digest"] != uids_digest(self.uids):
            raise ValueError(
                f"curriculum checkpoint was saved for a different dataset ({state['num_prompts']} prompts, "
                f"digest {state['uids_digest']}); this run has {len(self.uids)} prompts, digest "
                f"{uids_digest(self.uids)}. Resume with the same data, or start a new run."
            )
        self.store.load_state_dict(state["store"])
        self.retired = np.zeros(len(self.uids), dtype=bool)
        self.retired[np.asarray(state["retired"], dtype=np.int64)] = True
        self._latest = self._rates_from_store()
        if self.drift is not None and "drift" in state:
            self.drift.load_state_dict(state["drift"])


def difficulty_metrics(rates: FloatArray, num_buckets: int) -> dict[str, float]:
    """Metrics of the prompts drawn in a step, from their pass rates at draw time (NaN: unknown).

    Keys: ``curriculum/batch_prior_pass_rate`` (mean over known rates; absent if none is known),
    ``curriculum/batch_unknown_frac``, and ``curriculum/hist/<centre>`` for every bucket: the share
    of drawn prompts whose known rate falls in it (with the unknown share they sum to 1).
    """
    rates = np.asarray(rates, dtype=np.float64)
    known = rates[~np.isnan(rates)]
    total = max(len(rates), 1)
    out: dict[str, float] = {"curriculum/batch_unknown_frac": float((len(rates) - len(known)) / total)}
    if len(known):
        out["curriculum/batch_prior_pass_rate"] = float(known.mean())
    counts = np.bincount(bucket_of(known, num_buckets), minlength=num_buckets)
    for centre, count in zip(bucket_centres(num_buckets), counts, strict=True):
        out[f"curriculum/hist/{bucket_label(float(centre))}"] = float(count / total)
    return out


def check_batch_size(batch_size: int) -> None:
    """Raise ValueError unless ``batch_size`` is a positive integer."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """JSON-serialisable state of a numpy Generator (PCG64 state is a dict of Python ints)."""
    return dict(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: Mapping[str, Any]) -> None:
    """Restore ``rng_state()`` output into ``rng``."""
    rng.bit_generator.state = dict(state)


def check_state_keys(state: Mapping[str, Any], expected: set[str], kind: str) -> None:
    """Refuse a checkpoint whose keys differ from ``expected`` (strict resume, no silent drift)."""
    if state.get("kind") != kind:
        raise ValueError(f"checkpoint holds a {state.get('kind')!r} curriculum, this run builds {kind!r}")
    missing, extra = expected - set(state), set(state) - expected
    if missing or extra:
        raise ValueError(f"{kind} curriculum checkpoint: missing keys {sorted(missing)}, unexpected {sorted(extra)}")


def warn_option_changes(saved: Mapping[str, Any], current: Mapping[str, Any], kind: str) -> None:
    """Warn when options differ from the checkpoint's: resuming then continues a different run."""
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        warnings.warn(
            f"{kind} curriculum options changed since the checkpoint ({', '.join(changed)}); "
            "the continued run will not reproduce the uninterrupted one",
            stacklevel=3,
        )
