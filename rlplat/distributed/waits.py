"""Waiting on actors with deadlines, and the errors that name who failed in which phase.

Every blocking wait in rlplat goes through ``wait_all``: a missing result becomes a
``PhaseTimeout`` naming the actors still pending, a dead actor an ``ActorFailure`` naming it,
instead of the infinite waits users of the peers report (anchors.md (d) 2 and 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


class PhaseTimeout(RuntimeError):
    """Actors did not answer within the phase's deadline."""

    def __init__(self, phase: str, pending: Sequence[str], timeout_s: float) -> None:
        self.phase = phase
        self.pending = list(pending)
        super().__init__(f"{phase}: no answer from {', '.join(pending)} within {timeout_s:g} s "
                         f"(deadline timeouts.{phase}_s)")


class ActorFailure(RuntimeError):
    """An actor died, or its method raised, during a phase."""

    def __init__(self, phase: str, actor: str, index: int, cause: BaseException) -> None:
        self.phase = phase
        self.actor = actor
        self.index = index
        self.cause = cause
        self.died = isinstance(cause, RayActorError)
        what = ("died (its process exited: killed, out of memory, or crashed; see the Ray worker logs)"
                if self.died else f"failed: {_first_line(cause)}")
        super().__init__(f"{phase}: {actor} {what}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__


def wait_all(refs: Sequence[ray.ObjectRef], names: Sequence[str], phase: str,
             timeout_s: float) -> list[Any]:
    """Results of ``refs`` in order; raises ``PhaseTimeout`` or ``ActorFailure`` (first failure)."""
    if not refs:
        return []
    _, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    if pending:
        pending_set = set(pending)
        raise PhaseTimeout(phase, [n for r, n in zip(refs, names) if r in pending_set], timeout_s)
    results, failures = [], []
    for i, (ref, name) in enumerate(zip(refs, names)):
        try:
            results.append(ray.get(ref, timeout=timeout_s))
        except (RayActorError, RayTaskError, GetTimeoutError) as err:
            failures.append(ActorFailure(phase, name, i, err))
    if failures:
        # A dead actor makes its peers' collectives fail too: name the one that died.
        first = next((f for f in failures if f.died), failures[0])
        raise first from first.cause
    return results


def in_bundle(pg: PlacementGroup, bundle: int) -> PlacementGroupSchedulingStrategy:
    """Scheduling strategy that pins an actor to one bundle of ``pg``."""
    return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=bundle,
                                            placement_group_capture_child_tasks=True)
