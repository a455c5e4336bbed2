"""The ``Curriculum`` contract: which prompts each GRPO step trains on.

The GRPO loop drives a curriculum like this (one step)::

    idx = cur.next_batch(batch_size)                  # indices into the dataset's uids
    outcomes = generate_and_score(idx)                # one GroupOutcome per prompt
    kept, dropped = split_informative(outcomes)       # optional DAPO dynamic sampling
    while len(kept) < batch_size and rounds_left:
        extra = cur.next_batch(batch_size - len(kept), refill=True)   # same step, same target
        ...                                           # score, split, append (curricula.dynamic)
    batch = fill_batch(kept, dropped, batch_size)
    cur.observe(all_outcomes)                         # every scored group, kept or dropped
    log(cur.metrics())
    checkpoint["curriculum"] = cur.state_dict()       # json.dumps-able

Implementations need not inherit from anything: any class with these five methods is a
``Curriculum`` (structural typing), and ``build_curriculum("pkg.mod.Class", ...)`` builds it
(``curricula.registry`` says how its options reach it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from curricula.outcome import GroupOutcome


@runtime_checkable
class Curriculum(Protocol):
    """A stateful, checkpointable prompt sampler.

    Contracts:
        * ``next_batch`` is deterministic given the construction arguments (seed included) and the
          sequence of earlier calls (``next_batch``, ``observe``, ``load_state_dict``).
        * Resume: on a fresh instance built with the same arguments, ``load_state_dict(s)`` with
          ``s = old.state_dict()`` makes every future ``next_batch`` equal the old instance's.
        * ``state_dict()`` returns plain JSON types (``json.dumps`` works) and holds the RNG state,
          the step, the position in the data and the pass-rate store.
        * ``metrics()`` returns flat ``{"curriculum/...": float}``, describing the latest step.
    """

    def next_batch(self, batch_size: int, *, refill: bool = False) -> list[int]:
        """Indices (into the dataset's uids) of the prompts for the next step.

        ``refill=False`` starts a new step (advancing the schedule). ``refill=True`` draws more
        prompts for the current step, e.g. to replace groups dropped by dynamic sampling; the
        step does not advance.
        """
        ...

    def observe(self, outcomes: Sequence[GroupOutcome]) -> None:
        """Learn from scored groups (pass every group, including ones dynamic sampling dropped)."""
        ...

    def metrics(self) -> dict[str, float]:
        """Flat metrics of the latest step, keys prefixed ``curriculum/``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint state."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output (from an instance built with the same arguments)."""
        ...
