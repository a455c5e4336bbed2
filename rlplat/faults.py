"""Faults: deterministic fault injection (a testing aid) and the record of what failed.

Injection (``faults.inject``, off by default) makes a named actor fail in a named way at a named
phase and step, so that a test provokes exactly the failure it is about instead of racing a signal
against the run. The driver owns the plan: it passes the fault to the one call it applies to, so a
replaced actor does not fail again and a resumed run does not replay a fault that already fired.
Specs::

    engine0:freeze@generate:2     rollout worker 0 stops (SIGSTOP) at the start of step 2's generation
    engine1:exit@sync:3           rollout worker 1 exits while loading step 3's weights
    learner1:freeze@train:3       learner rank 1 stops in step 3's training
    reward:freeze@score:2         the reward scorer stops while scoring step 2
    driver:sigterm@generate:2     the driver sends itself SIGTERM when step 2's generation starts
    driver:kill@generate:3        the driver SIGKILLs its process group (itself, the local Ray
                                  instance and every actor) when step 3's generation starts
    prompt:exit@arith:17          any engine given prompt uid ``arith:17`` exits (a prompt that
                                  crashes engines; the uid may contain ':')

Kinds: ``exit`` (the process dies), ``freeze`` (SIGSTOP: alive, answering nothing), ``hang`` (the
call blocks in native code holding the GIL, as a deadlock does, so heartbeats stop too), ``raise``
(the call raises); for the driver only, ``sigterm`` (preemption) and ``kill`` (the machine is lost:
nothing runs a handler, as when the test harness SIGKILLs the run).
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["exit", "freeze", "hang", "raise", "sigterm", "kill"]
DRIVER_KINDS = ("sigterm", "kill")
_ACTOR_SPEC = re.compile(r"^(?P<target>engine\d+|learner\d+|reward|driver):"
                         r"(?P<kind>exit|freeze|hang|raise|sigterm|kill)"
                         r"@(?P<phase>generate|sync|train|score):(?P<step>\d+)$")
_PROMPT_SPEC = re.compile(r"^prompt:(?P<kind>exit|raise)@(?P<uid>.+)$")


class InjectedFault(RuntimeError):
    """Raised by a ``raise`` fault (the exception an actor's call fails with)."""


@dataclass(frozen=True)
class FaultSpec:
    """One injected fault: ``target`` fails with ``kind`` at ``phase`` of ``step``."""

    target: str
    kind: FaultKind
    phase: str
    step: int

    def __str__(self) -> str:
        return f"{self.target}:{self.kind}@{self.phase}:{self.step}"


@dataclass(frozen=True)
class FaultPlan:
    """The parsed ``faults.inject``: actor faults by (target, phase, step), and crashing prompts."""

    actor_faults: tuple[FaultSpec, ...] = ()
    crash_prompts: dict[str, FaultKind] = field(default_factory=dict)

    def take(self, role: str, phase: str, step: int, fired: list[str]) -> dict[int, FaultKind]:
        """The faults actors of ``role`` ("engine", "learner", "reward", "driver") must suffer at
        ``phase`` of ``step``, by actor index (0 for the single reward scorer and driver); each is
        appended to ``fired`` so that it happens once per run."""
        out: dict[int, FaultKind] = {}
        for spec in self.actor_faults:
            if spec.phase != phase or spec.step != step or str(spec) in fired:
                continue
            if spec.target == role or (spec.target.startswith(role) and spec.target[len(role):].isdigit()):
                out[int(spec.target[len(role):] or 0)] = spec.kind
                fired.append(str(spec))
        return out


def parse_faults(specs: Iterable[str]) -> FaultPlan:
    """Parse ``faults.inject``; raises ``ValueError`` naming the spec and the grammar."""
    actor: list[FaultSpec] = []
    prompts: dict[str, FaultKind] = {}
    for text in specs:
        if m := _PROMPT_SPEC.match(text):
            prompts[m["uid"]] = m["kind"]  # type: ignore[assignment]  # the regex admits only FaultKinds
        elif m := _ACTOR_SPEC.match(text):
            if (m["target"] == "driver") != (m["kind"] in DRIVER_KINDS):
                raise ValueError(f"fault {text!r}: the driver's faults are sigterm and kill, and only the "
                                 "driver's")
            actor.append(FaultSpec(m["target"], m["kind"], m["phase"], int(m["step"])))  # type: ignore[arg-type]
        else:
            raise ValueError(f"fault {text!r} is not TARGET:KIND@PHASE:STEP (TARGET engineN, learnerN, reward or "
                             "driver; KIND exit, freeze, hang, raise, or sigterm and kill for the driver; PHASE generate, sync, train, score) "
                             "nor prompt:KIND@UID")
    return FaultPlan(tuple(actor), prompts)


def inject(kind: FaultKind | None, where: str) -> None:
    """Suffer ``kind`` now (in the actor process); no-op for None. ``where`` names the call."""
    if kind is None:
        return
    if kind == "exit":
        os._exit(17)
    if kind == "freeze":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif kind == "hang":
        import ctypes

        # PyDLL keeps the GIL during the call: no Python thread of this process runs again.
        ctypes.PyDLL(None).pause()
    elif kind == "raise":
        raise InjectedFault(f"injected fault in {where}")
    elif kind == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
    elif kind == "kill":
        os.killpg(os.getpgid(0), signal.SIGKILL)


@dataclass
class FaultLog:
    """What failed during the run and what was done about it; its ``state()`` is checkpointed, so
    the restart bounds mean "per run" across resumes.

    Attributes:
        step: The step in progress (set by the stage's loop; recorded with each event).
        rollout_restarts: Engine restarts charged against ``faults.max_rollout_restarts``.
        reward_restarts: Reward-scorer restarts charged against ``faults.max_reward_restarts``.
        dropped_prompts: Uids of prompts dropped for crashing engines or the tokenizer.
        fired: Injected faults (``faults.inject`` specs) that already happened.
        fp8_fallbacks: Times the mismatch guardrail switched FP8 engines back to full precision.
        kl_streak: Consecutive steps with ``mismatch/kl`` above ``grpo.mismatch.guard_kl``.
        history: One record per event: step, phase, actor, what happened, seconds to notice it,
            and the action taken.
    """

    step: int = 0
    rollout_restarts: int = 0
    reward_restarts: int = 0
    dropped_prompts: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    history: list[dict[str, object]] = field(default_factory=list)
    fp8_fallbacks: int = 0
    kl_streak: int = 0

    def record(self, phase: str, actor: str, what: str, detect_s: float, action: str) -> None:
        """Add an event to the history."""
        self.history.append({"step": self.step, "phase": phase, "actor": actor, "what": what,
                             "detect_s": round(detect_s, 3), "action": action})

    def metrics(self) -> dict[str, float]:
        """``faults/*`` keys of a step's metrics line (run totals)."""
        return {"faults/rollout_restarts": float(self.rollout_restarts),
                "faults/reward_restarts": float(self.reward_restarts),
                "faults/dropped_prompts": float(len(self.dropped_prompts)),
                "faults/events": float(len(self.history)),
                "faults/fp8_fallbacks": float(self.fp8_fallbacks)}

    def state(self) -> dict[str, object]:
        """JSON-serialisable state (what a checkpoint holds)."""
        return {"rollout_restarts": self.rollout_restarts, "reward_restarts": self.reward_restarts,
                "dropped_prompts": list(self.dropped_prompts), "fired": list(self.fired),
                "history": [dict(h) for h in self.history], "fp8_fallbacks": self.fp8_fallbacks,
                "kl_streak": self.kl_streak}

    def load_state(self, state: dict[str, object]) -> None:
        """Restore ``state()`` output."""
        self.rollout_restarts = int(state.get("rollout_restarts", 0))  # type: ignore[call-overload]
        self.reward_restarts = int(state.get("reward_restarts", 0))  # type: ignore[call-overload]
        self.dropped_prompts = [str(u) for u in state.get("dropped_prompts", [])]  # type: ignore[attr-defined]
        self.fired = [str(f) for f in state.get("fired", [])]  # type: ignore[attr-defined]
        self.history = [dict(h) for h in state.get("history", [])]  # type: ignore[attr-defined]
        self.fp8_fallbacks = int(state.get("fp8_fallbacks", 0))  # type: ignore[call-overload]
        self.kl_streak = int(state.get("kl_streak", 0))  # type: ignore[call-overload]


class PromptBudget:
    """Which engine restarts a bad prompt caused, so that they do not count against the engines.

    Each engine failure while generating is logged with the uids of the prompts it was given. A
    chunk that fails is retried whole once (a one-off engine fault then costs nothing else), then
    split into single prompts; a prompt that fails alone after more than ``retries`` failures in all
    is dropped for the rest of the run. A failure is charged to the restart bound once every prompt
    it involved is decided, and only if none of them was dropped.
    """

    def __init__(self, retries: int, dropped: Iterable[str] = ()) -> None:
        self.retries = retries
        self.crashes: dict[str, int] = {}
        self.dropped = set(dropped)
        self._failures: list[frozenset[str]] = []
        self._undecided: set[str] = set()

    def failed(self, uids: Iterable[str]) -> None:
        """An engine failed while generating ``uids``."""
        chunk = frozenset(uids)
        self._failures.append(chunk)
        self._undecided |= chunk
        for uid in chunk:
            self.crashes[uid] = self.crashes.get(uid, 0) + 1

    def drop_if_spent(self, uid: str) -> bool:
        """After ``uid`` failed alone: drop it if its budget is spent; returns whether it was."""
        if self.crashes.get(uid, 0) > self.retries:
            self.dropped.add(uid)
            self._undecided.discard(uid)
            return True
        return False

    def succeeded(self, uids: Iterable[str]) -> None:
        """``uids`` were generated: they are not the cause of earlier failures."""
        self._undecided -= set(uids)

    def take_charged(self) -> int:
        """Failures now decided and not caused by a dropped prompt (each returned once)."""
        decided = [f for f in self._failures if not f & self._undecided]
        self._failures = [f for f in self._failures if f & self._undecided]
        return sum(1 for f in decided if not f & self.dropped)
