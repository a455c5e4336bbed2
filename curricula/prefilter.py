"""Offline prefiltering (paper, LN §5.1): drop prompts the reference model already solves.

The paper samples 8 responses per prompt with LN-Super, computes each prompt's pass rate and
discards prompts at or above 0.75 (6 or more of 8 correct). Whether prompts at pass rate 0 were also
dropped is not stated; here it is an option, off by default, to stay with what the paper says.

Generation and scoring run elsewhere (rollout workers and the reward pool). This module is the pure
part: a pass-rate table in, the uids to keep out, plus writers for the filtered dataset and table::

    store = PassRateStore()
    store.update(outcomes)                     # GroupOutcome per prompt, k samples each
    store.to_table(run_dir / "pass_rates.jsonl")
    result = prefilter(store, drop_at_or_above=0.75)
    write_filtered_dataset(rows, result, run_dir / "train.filtered.jsonl")
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from curricula.store import PassRateStore
from rlbase import write_jsonl

# Pass rates in a float table can come out as 0.7499999999 for 6/8; compare with a tolerance far
# below any k/n step so that "6 of 8 at a 0.75 threshold" is always dropped.
_EPS = 1e-9


@dataclass(frozen=True)
class PrefilterResult:
    """Outcome of ``prefilter``; every tuple keeps the table's order.

    Attributes:
        kept_uids: Prompts with a known pass rate that survive the filter.
        dropped_easy: Prompts at or above the threshold.
        dropped_zero: Prompts at pass rate 0 (only when ``drop_zero`` was set).
    """

    kept_uids: tuple[str, ...]
    dropped_easy: tuple[str, ...]
    dropped_zero: tuple[str, ...]

    @property
    def dropped(self) -> frozenset[str]:
        """Every dropped uid."""
        return frozenset(self.dropped_easy) | frozenset(self.dropped_zero)

    def summary(self) -> dict[str, float]:
        """Counts for logging: ``prefilter/kept``, ``prefilter/dropped_easy``, ``prefilter/dropped_zero``."""
        return {
            "prefilter/kept": float(len(self.kept_uids)),
            "prefilter/dropped_easy": float(len(self.dropped_easy)),
            "prefilter/dropped_zero": float(len(self.dropped_zero)),
        }


def prefilter(table: PassRateStore | Mapping[str, float], drop_at_or_above: float = 0.75,
              drop_zero: bool = False) -> PrefilterResult:
    """Split the prompts of a pass-rate table into kept, too easy and (optionally) unsolved.

    Args:
        table: A store (its cumulative pass rate is used, so a store and the table file it writes
            filter identically) or a mapping uid -> pass rate in [0, 1].
        drop_at_or_above: Drop prompts whose pass rate is >= this (paper: 0.75). 1.0 keeps all
            but the fully solved; a value above 1 disables the upper cut.
        drop_zero: Also drop prompts no sample solved (no GRPO signal until the policy improves).

    Prompts in a store with no samples have no pass rate and are kept.
    """
    if not drop_at_or_above > 0.0:
        raise ValueError(f"drop_at_or_above must be > 0 (0.75 in the paper), got {drop_at_or_above}")
    kept: list[str] = []
    easy: list[str] = []
    zero: list[str] = []
    for uid, rate in _pass_rates(table):
        if rate is not None and rate >= drop_at_or_above - _EPS:
            easy.append(uid)
        elif rate is not None and drop_zero and rate <= _EPS:
            zero.append(uid)
        else:
            kept.append(uid)
    return PrefilterResult(tuple(kept), tuple(easy), tuple(zero))


def _pass_rates(table: PassRateStore | Mapping[str, float]) -> Iterator[tuple[str, float | None]]:
    if isinstance(table, PassRateStore):
        for uid in table:
            stats = table.get(uid)
            yield uid, None if stats is None else stats.pass_rate
        return
    for uid, rate in table.items():
        rate = float(rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"prompt {uid!r}: pass rate must be in [0, 1], got {rate}")
        yield str(uid), rate


UidOf = Callable[[int, Mapping[str, Any]], str]


def filter_rows(rows: Iterable[Mapping[str, Any]], result: PrefilterResult,
                uid_of: str | UidOf = "uid") -> Iterator[Mapping[str, Any]]:
    """Yield the rows whose uid was not dropped, unchanged and in order.

    Rows whose uid is not in the table are kept: there is no evidence against them.

    Args:
        uid_of: The key holding each row's uid, or a function ``(row_index, row) -> uid``.
            Derive uids from a stable field, not the row number: row numbers shift once rows
            are removed, and the pass-rate store is keyed by uid.
    """
    dropped = result.dropped
    get_uid = _uid_getter(uid_of)
    for index, row in enumerate(rows):
        if get_uid(index, row) not in dropped:
            yield row


def write_filtered_dataset(rows: Iterable[Mapping[str, Any]], result: PrefilterResult,
                           path: str | os.PathLike[str], uid_of: str | UidOf = "uid") -> int:
    """Write the kept rows (see ``filter_rows``) as JSONL; returns how many were written.

    The write is atomic (``rlbase.write_jsonl``): a reader sees the old file or the complete new one.
    """
    return write_jsonl(path, filter_rows(rows, result, uid_of))


def write_pass_rate_table(store: PassRateStore, path: str | os.PathLike[str]) -> None:
    """Write ``store`` as a pass-rate table file, atomically (same as ``store.to_table(path)``)."""
    store.to_table(path)


def _uid_getter(uid_of: str | UidOf) -> UidOf:
    if callable(uid_of):
        return uid_of
    key = uid_of

    def by_key(index: int, row: Mapping[str, Any]) -> str:
        if key not in row:
            raise ValueError(f"dataset row {index} has no {key!r} field; pass uid_of=<key or function>")
        return str(row[key])

    return by_key
