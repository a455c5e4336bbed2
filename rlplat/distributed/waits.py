"""Waiting on actors: deadlines, heartbeats, and the errors that name who failed in which phase.

Every blocking wait in rlplat goes through ``watch`` (or ``wait_all``, which raises its first
failure). A call can end four ways besides its result:

* its actor died (the process exited, was killed, crashed): ``ActorFailure`` at once;
* its actor stopped answering heartbeats for ``heartbeat_s``: frozen (SIGSTOP), deadlocked in
  native code, or on a lost node. Each actor answers ``heartbeat()`` from a concurrency group of its
  own (``HEALTH``), so a long call does not delay the answer; ``ActorFailure`` with
  ``ActorUnresponsive`` as its cause;
* the phase deadline passed (``timeouts.<phase>_s``): ``PhaseTimeout``, the outer bound;
* the caller's ``interrupt()`` said stop (preemption): ``Interrupted``.

This replaces the infinite waits that users of other RL frameworks report (weight syncs and
collectives with no timeout, a lost rollout worker waited on forever), and the minutes a frozen
actor used to cost before its phase deadline passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

# Concurrency group of the heartbeat method on every actor rlplat starts.
HEALTH = "health"
HEALTH_GROUPS = {HEALTH: 1}
# How often a pending wait wakes up to look at heartbeats and the interrupt (seconds).
_POLL_S = 0.25
# ``ray.get`` of a result ``ray.wait`` found ready: local already, so answered at once; the bound only
# keeps a wait from ever being unbounded.
_READY_S = 60.0
# After a call fails, how long a fail-fast wait still looks for the actor death behind it.
_DEATH_GRACE_S = 5.0


class PhaseTimeout(RuntimeError):
    """Actors did not answer within the phase's deadline."""

    def __init__(self, phase: str, pending: Sequence[str], timeout_s: float) -> None:
        self.phase = phase
        self.pending = list(pending)
        super().__init__(f"{phase}: no answer from {', '.join(pending)} within {timeout_s:g} s "
                         f"(deadline timeouts.{phase}_s)")


class ActorUnresponsive(RuntimeError):
    """An actor answered no heartbeat for ``heartbeat_s`` seconds."""


class ActorFailure(RuntimeError):
    """An actor died, stopped answering, or its method raised, during a phase.

    Attributes:
        died: The process is gone or unresponsive (so it must be replaced), not merely raised.
        detect_s: Seconds from the start of the wait to the failure being noticed.
    """

    def __init__(self, phase: str, actor: str, index: int, cause: BaseException, detect_s: float = 0.0) -> None:
        self.phase = phase
        self.actor = actor
        self.index = index
        self.cause = cause
        self.detect_s = detect_s
        self.seen = time.monotonic()
        self.died = isinstance(cause, (RayActorError, ActorUnresponsive))
        if isinstance(cause, ActorUnresponsive):
            what = f"stopped answering ({cause}: frozen, deadlocked or on a lost node)"
        elif isinstance(cause, RayActorError):
            what = "died (its process exited: killed, out of memory, or crashed; see the Ray worker logs)"
        else:
            what = f"failed: {_first_line(cause)}"
        super().__init__(f"{phase}: {actor} {what}")


class Interrupted(RuntimeError):
    """The caller asked the wait to stop (preemption); the calls may still be running."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__


@dataclass(frozen=True)
class Call:
    """A remote call in flight: its result ref, the actor it runs on, and a name for errors."""

    ref: ray.ObjectRef
    actor: Any
    name: str


def calls(refs: Sequence[ray.ObjectRef], actors: Sequence[Any], names: Sequence[str]) -> list[Call]:
    """``Call``s of ``refs[i]`` running on ``actors[i]``, named ``names[i]``."""
    return [Call(r, a, n) for r, a, n in zip(refs, actors, names, strict=True)]


class _Heartbeats:
    """The heartbeat probe of each watched actor: sent every ``heartbeat_s / 2``, overdue after ``heartbeat_s``."""

    def __init__(self, heartbeat_s: float) -> None:
        self.heartbeat_s = heartbeat_s
        self.probes: dict[int, tuple[ray.ObjectRef, float]] = {}
        self.answered: dict[int, float] = {}

    def check(self, i: int, actor: Any, now: float) -> BaseException | None:
        """The failure of actor ``i`` if it is overdue or dead, else None (sending probes as needed)."""
        probe = self.probes.get(i)
        if probe is not None:
            ref, sent = probe
            ready, _ = ray.wait([ref], timeout=0)
            if ready:
                try:
                    ray.get(ref, timeout=_READY_S)
                except RayActorError as err:
                    return err
                self.answered[i] = now
                probe = None
            elif now - sent > self.heartbeat_s:
                return ActorUnresponsive(f"no heartbeat within {self.heartbeat_s:g} s (faults.heartbeat_s)")
        if probe is None and now - self.answered.get(i, 0.0) >= self.heartbeat_s / 2:
            self.probes[i] = (actor.heartbeat.options(concurrency_group=HEALTH).remote(), now)
        elif probe is None:
            self.probes.pop(i, None)
        return None


def watch(watched: Sequence[Call], phase: str, timeout_s: float, heartbeat_s: float | None = None,
          interrupt: Callable[[], bool] | None = None, fail_fast: bool = False) -> list[Any]:
    """The result of each call, or the exception it ended with (``ActorFailure``, ``PhaseTimeout``).

    Waits until every call has ended (with ``fail_fast``, until the first failure: the calls of a
    collective never end once a peer is gone; the others are then left as None), probing the actors
    of pending calls when ``heartbeat_s`` is given. Raises ``Interrupted`` as soon as
    ``interrupt()`` returns True.
    """
    start = time.monotonic()
    results: list[Any] = [None] * len(watched)
    pending = dict(enumerate(watched))
    beats = _Heartbeats(heartbeat_s) if heartbeat_s else None
    while pending:
        ready, _ = ray.wait([c.ref for c in pending.values()], num_returns=len(pending), timeout=_POLL_S)
        done = set(ready)
        now = time.monotonic()
        for i, call in list(pending.items()):
            if call.ref in done:
                try:
                    results[i] = ray.get(call.ref, timeout=_READY_S)
                except (RayActorError, RayTaskError, GetTimeoutError) as err:
                    results[i] = ActorFailure(phase, call.name, i, err, now - start)
            elif beats is not None and (cause := beats.check(i, call.actor, now)) is not None:
                results[i] = ActorFailure(phase, call.name, i, cause, now - start)
            else:
                continue
            del pending[i]
        if fail_fast and _settled(results, now, heartbeat_s):
            break
        if pending and now - start > timeout_s:
            late = PhaseTimeout(phase, [c.name for c in pending.values()], timeout_s)
            for i in pending:
                results[i] = late
            break
        if pending and interrupt is not None and interrupt():
            raise Interrupted(f"{phase}: interrupted with {', '.join(c.name for c in pending.values())} pending")
    return results


def _settled(results: Sequence[Any], now: float, heartbeat_s: float | None) -> bool:
    """Whether a fail-fast wait may stop: an actor died (or went silent), or a call failed and no
    death followed within the grace a peer's death takes to surface (its collective errors first)."""
    failures = [r for r in results if isinstance(r, ActorFailure)]
    if any(f.died for f in failures):
        return True
    grace = min(heartbeat_s or _DEATH_GRACE_S, _DEATH_GRACE_S)
    return bool(failures) and now - min(f.seen for f in failures) > grace


def wait_all(watched: Sequence[Call], phase: str, timeout_s: float, heartbeat_s: float | None = None,
             interrupt: Callable[[], bool] | None = None) -> list[Any]:
    """Results of every call, in order; raises the first failure (a death before a mere error,
    since a dead actor makes its peers' collectives fail too), without waiting for the others."""
    results = watch(watched, phase, timeout_s, heartbeat_s, interrupt, fail_fast=True)
    failures = [r for r in results if isinstance(r, (ActorFailure, PhaseTimeout))]
    if failures:
        first = next((f for f in failures if isinstance(f, ActorFailure) and f.died), failures[0])
        raise first from getattr(first, "cause", None)
    return results


def in_bundle(pg: PlacementGroup, bundle: int) -> PlacementGroupSchedulingStrategy:
    """Scheduling strategy that pins an actor to one bundle of ``pg``."""
    return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=bundle,
                                            placement_group_capture_child_tasks=True)


def arm_faults(actors: Sequence[Any], names: Sequence[str], faults: Mapping[int, str], phase: str,
               timeout_s: float) -> None:
    """Testing aid (``faults.inject``): arm ``actors[i]`` to fail with ``faults[i]`` at the start of
    its next ``phase`` call (``rlplat.faults.ArmedFaults``). Waits for every answer, so the arming
    is in place before the caller sends that call; does nothing for no faults (production)."""
    if not faults:
        return
    idx = sorted(faults)
    wait_all(calls([actors[i].arm_fault.remote(phase, faults[i]) for i in idx], [actors[i] for i in idx],
                   [names[i] for i in idx]), phase, timeout_s)
