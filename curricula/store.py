"""The pass-rate store: per-prompt success statistics, seeded offline and updated during training.

Two kinds of evidence land in the store:

* **offline** records from a pass-rate table (the prefilter run, where a reference model answered
  each prompt k times; the paper uses LN-Super with k = 8), and
* **training** records, one per scored group, from the policy being trained.

Both add to the cumulative ``attempts``/``successes``. Training groups are also kept in a short
history (``recent``), because the policy changes: the *latest* pass rate, which curricula bucket
on, is the last training group's, or the offline rate while the policy has not seen the prompt.
This departs from the paper, which ranks prompts by the fixed, pre-computed pass rate only.

Table file format (JSONL, one prompt a line; other keys are ignored, duplicate uids are summed so
sharded prefilter outputs can simply be concatenated)::

    {"uid": "gsm8k-17", "attempts": 8, "successes": 5}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from curricula.outcome import GroupOutcome
from rlbase import write_jsonl

STATE_VERSION = 1


@dataclass(frozen=True)
class PromptStats:
    """Everything the store knows about one prompt.

    Attributes:
        attempts: Samples recorded, offline and training together.
        successes: Of those, the ones the verifier accepted.
        groups: Number of training groups observed (0: only offline evidence).
        recent: The last training groups as ``(attempts, successes)``, oldest first, at most
            ``PassRateStore.history`` of them.
    """

    attempts: int = 0
    successes: int = 0
    groups: int = 0
    recent: tuple[tuple[int, int], ...] = ()

    @property
    def pass_rate(self) -> float | None:
        """Cumulative pass rate over every recorded sample; None without samples."""
        return self.successes / self.attempts if self.attempts else None

    @property
    def latest_pass_rate(self) -> float | None:
        """Pass rate of the latest training group, else the cumulative (offline) rate."""
        if self.recent:
            attempts, successes = self.recent[-1]
            return successes / attempts
        return self.pass_rate

    def recent_pass_rate(self, min_attempts: int) -> float | None:
        """Pass rate over the most recent training groups that hold at least ``min_attempts`` samples.

        Returns None while the kept training history holds fewer samples than that.
        """
        attempts = successes = 0
        for group_attempts, group_successes in reversed(self.recent):
            attempts += group_attempts
            successes += group_successes
            if attempts >= min_attempts:
                return successes / attempts
        return None


class PassRateStore:
    """Per-prompt pass-rate statistics keyed by prompt uid.

    Contract: ``load_state_dict(state_dict())`` restores an equal store, and ``state_dict()`` is
    JSON-serialisable. Updating is O(groups); the store never forgets a prompt.

    Args:
        history: How many recent training groups to keep per prompt (bounds checkpoint size; a
            curriculum's retirement window must fit in it).
    """

    def __init__(self, history: int = 16) -> None:
        if history < 1:
            raise ValueError(f"PassRateStore.history must be >= 1, got {history}")
        self.history = history
        self._stats: dict[str, PromptStats] = {}

    def __len__(self) -> int:
        return len(self._stats)

    def __contains__(self, uid: object) -> bool:
        return uid in self._stats

    def __iter__(self) -> Iterator[str]:
        return iter(self._stats)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PassRateStore) and (self.history, self._stats) == (other.history, other._stats)

    def __repr__(self) -> str:
        return f"PassRateStore({len(self)} prompts, history={self.history})"

    def get(self, uid: str) -> PromptStats | None:
        """The prompt's statistics, or None if nothing was recorded for it."""
        return self._stats.get(uid)

    def latest_pass_rate(self, uid: str) -> float | None:
        """``PromptStats.latest_pass_rate`` of the prompt, or None if unknown."""
        stats = self._stats.get(uid)
        return None if stats is None else stats.latest_pass_rate

    def add(self, uid: str, attempts: int, successes: int, *, training: bool = True) -> PromptStats:
        """Record ``successes`` out of ``attempts`` samples for ``uid`` and return the new stats.

        ``training=False`` records offline evidence (reference model), which does not enter
        ``recent`` and therefore never counts towards retirement.
        """
        _check_counts(uid, attempts, successes)
        if training and attempts == 0:
            raise ValueError(f"prompt {uid!r}: a training group needs at least one sample")
        old = self._stats.get(uid, PromptStats())
        new = replace(old, attempts=old.attempts + attempts, successes=old.successes + successes)
        if training:
            recent = (*old.recent, (attempts, successes))[-self.history:]
            new = replace(new, groups=old.groups + 1, recent=recent)
        self._stats[uid] = new
        return new

    def update(self, outcomes: Iterable[GroupOutcome]) -> None:
        """Record each scored group as a training group (call with *every* scored group)."""
        for outcome in outcomes:
            self.add(outcome.uid, outcome.n, outcome.successes, training=True)

    # ---- pass-rate table files -------------------------------------------------------------

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], history: int = 16, source: str = "rows") -> PassRateStore:
        """Build a store from table rows ``{"uid", "attempts", "successes"}`` (offline evidence)."""
        store = cls(history=history)
        for line_no, row in enumerate(rows, start=1):
            uid, attempts, successes = _parse_row(row, f"{source}:{line_no}")
            store.add(uid, attempts, successes, training=False)
        return store

    @classmethod
    def from_table(cls, path: str | os.PathLike[str], history: int = 16) -> PassRateStore:
        """Read a pass-rate table (JSONL); blank lines are skipped, duplicate uids summed.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: a line is not JSON or lacks valid ``uid``/``attempts``/``successes``
                (the message names the file and line).
        """
        with open(path, encoding="utf-8") as f:
            return cls.from_rows(_read_jsonl(f, str(path)), history=history, source=str(path))

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per prompt, in insertion order, with the cumulative counts and pass rate."""
        return [
            {"uid": uid, "attempts": s.attempts, "successes": s.successes, "pass_rate": s.pass_rate}
            for uid, s in self._stats.items()
        ]

    def to_table(self, path: str | os.PathLike[str]) -> None:
        """Write ``table_rows()`` as JSONL atomically (``rlbase.write_jsonl``: a temporary file renamed
        over ``path``, so a crash never leaves a half-written table); parent directories are created."""
        write_jsonl(path, self.table_rows())

    # ---- checkpointing ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot: ``{"version", "history", "prompts": {uid: [a, s, g, recent]}}``."""
        prompts = {
            uid: [s.attempts, s.successes, s.groups, [list(g) for g in s.recent]] for uid, s in self._stats.items()
        }
        return {"version": STATE_VERSION, "history": self.history, "prompts": prompts}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the contents with a ``state_dict()`` snapshot."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"pass-rate store state has version {state.get('version')!r}, expected {STATE_VERSION}")
        self.history = int(state["history"])
        self._stats = {
            uid: PromptStats(int(a), int(s), int(g), tuple((int(x), int(y)) for x, y in recent))
            for uid, (a, s, g, recent) in state["prompts"].items()
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PassRateStore:
        """A new store holding a ``state_dict()`` snapshot."""
        store = cls(history=int(state["history"]))
        store.load_state_dict(state)
        return store


def _check_counts(uid: str, attempts: int, successes: int) -> None:
    if attempts < 0 or successes < 0 or successes > attempts:
        raise ValueError(f"prompt {uid!r}: need 0 <= successes <= attempts, got {successes} of {attempts}")


def _parse_row(row: Mapping[str, Any], where: str) -> tuple[str, int, int]:
    # A malformed table row is bad input data, reported as ValueError like every other table error
    # (callers catch ValueError for a bad file), even where the problem is a value's type.
    try:
        uid, attempts, successes = row["uid"], row["attempts"], row["successes"]
    except (KeyError, TypeError):
        raise ValueError(f"{where}: a pass-rate row needs keys uid, attempts, successes; got {row!r}") from None
    if isinstance(uid, bool) or not isinstance(uid, (str, int)):
        raise ValueError(f"{where}: uid must be a string (or an integer), got {uid!r}")
    for name, value in (("attempts", attempts), ("successes", successes)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: {name} must be an integer, got {value!r}")
    try:
        _check_counts(str(uid), attempts, successes)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return str(uid), attempts, successes


def _read_jsonl(lines: Iterable[str], source: str) -> Iterator[dict[str, Any]]:
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}:{line_no}: not a JSON object ({err.msg})") from None


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSONL file into a list of objects (blank lines skipped; errors name file and line)."""
    with open(path, encoding="utf-8") as f:
        return list(_read_jsonl(f, str(path)))

