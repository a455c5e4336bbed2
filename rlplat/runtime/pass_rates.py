"""A run's pass-rate store as a Ray actor, shared by the stages and drivers that sample its prompts
(``curriculum.shared_store=true``).

Stages run as separate Ray jobs (separate drivers), so without it the prefilter hands its counts to
GRPO through ``pass_rates.jsonl`` only, and nothing outside the GRPO driver sees the policy's pass
rates while it trains. With it, one named, detached actor per run (``rlplat-pass-rates-<run>`` in
the ``rlplat`` namespace) holds a ``PassRateStore``: the prefilter puts its table there when it
ends, GRPO seeds its curriculum from it and adds every group it scores, and any other driver on the cluster
(an evaluation, a second learner) can read or add to it. The pipeline kills the actor when it ends.

The files stay the durable record: a resumed stage reads its checkpoint and the table, never the
actor, which lives only as long as the cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from curricula import PassRateStore

NAMESPACE = "rlplat"
Group = tuple[str, int, int]  # uid, attempts, successes


@ray.remote(num_cpus=0)
class PassRateStoreActor:
    """Holds one ``PassRateStore``; every call is atomic (an actor runs one call at a time)."""

    def __init__(self) -> None:
        self.store = PassRateStore()

    def reset(self, rows: Sequence[dict[str, Any]]) -> int:
        """Replace the contents with table rows (offline evidence: a prefilter's table)."""
        self.store = PassRateStore.from_rows(rows, source="shared store")
        return len(self.store)

    def update(self, groups: Sequence[Group], training: bool = True) -> int:
        """Add scored groups; returns the number of prompts the store knows."""
        for uid, attempts, successes in groups:
            self.store.add(uid, attempts, successes, training=training)
        return len(self.store)

    def table_rows(self) -> list[dict[str, Any]]:
        """``PassRateStore.table_rows``: the cumulative counts per prompt."""
        return self.store.table_rows()


def actor_name(run: str) -> str:
    """The shared store's actor name for the run called ``run``."""
    return f"rlplat-pass-rates-{run}"


def shared_store(run: str) -> Any:
    """The run's shared store actor, created on first use (detached: it outlives the stage's job)."""
    return PassRateStoreActor.options(  # type: ignore[attr-defined]
        name=actor_name(run), namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote()


def release(run: str) -> None:
    """Kill the run's shared store actor if it exists."""
    try:
        ray.kill(ray.get_actor(actor_name(run), namespace=NAMESPACE))
    except ValueError:
        pass  # never created
