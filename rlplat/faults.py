"""Faults: deterministic fault injection (a testing aid) and the record of what failed.

Injection (``faults.inject``, off by default) makes a named actor fail in a named way at a named
phase and step, so that a test provokes exactly the failure it is about instead of racing a signal
against the run. Specs::

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

Who injects: nobody's call signature carries a fault. The run's ``FaultInjector`` sits beside the
loop; each actor group consults it when its own phase starts (``FaultInjector.at``), which fires the
driver's faults of that phase and names the group's actors to fail; the group arms those actors
(``ArmedFaults``, held by each actor), and an armed actor suffers the fault at the start of its next
call of that phase. A fault fires once per run (``FaultLog.fired`` is checkpointed), so a replaced
actor does not fail again and a resumed run does not replay it. The step a fault names is the step
the calling thread works for (``FaultLog.begin``): the asynchronous lookahead thread generates the
next step while the main thread trains this one.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

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
            prompts[m["uid"]] = cast(FaultKind, m["kind"])  # the regex admits only FaultKinds
        elif m := _ACTOR_SPEC.match(text):
            if (m["target"] == "driver") != (m["kind"] in DRIVER_KINDS):
                raise ValueError(f"fault {text!r}: the driver's faults are sigterm and kill, and only the "
                                 "driver's")
            actor.append(FaultSpec(m["target"], cast(FaultKind, m["kind"]), m["phase"], int(m["step"])))
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
        rollout_restarts: Engine restarts charged against ``faults.max_rollout_restarts``.
        reward_restarts: Reward-scorer restarts charged against ``faults.max_reward_restarts``.
        dropped_prompts: Uids of prompts dropped for crashing engines or the tokenizer.
        fired: Injected faults (``faults.inject`` specs) that already happened.
        history: One record per event: step, phase, actor, what happened, seconds to notice it,
            and the action taken.
    """

    rollout_restarts: int = 0
    reward_restarts: int = 0
    dropped_prompts: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    history: list[dict[str, object]] = field(default_factory=list)
    _thread: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    @property
    def step(self) -> int:
        """The step the calling thread works for (0 before ``begin``)."""
        return int(getattr(self._thread, "step", 0))

    def begin(self, step: int) -> None:
        """The calling thread works for ``step`` from now on: its events are recorded with it, and
        the injected faults that fire on it are those of ``step``."""
        self._thread.step = step

    def record(self, phase: str, actor: str, what: str, detect_s: float, action: str) -> None:
        """Add an event to the history."""
        self.history.append({"step": self.step, "phase": phase, "actor": actor, "what": what,
                             "detect_s": round(detect_s, 3), "action": action})

    def metrics(self) -> dict[str, float]:
        """``faults/*`` keys of a step's metrics line (run totals)."""
        return {"faults/rollout_restarts": float(self.rollout_restarts),
                "faults/reward_restarts": float(self.reward_restarts),
                "faults/dropped_prompts": float(len(self.dropped_prompts)),
                "faults/events": float(len(self.history))}

    def state(self) -> dict[str, object]:
        """JSON-serialisable state (what a checkpoint holds)."""
        return {"rollout_restarts": self.rollout_restarts, "reward_restarts": self.reward_restarts,
                "dropped_prompts": list(self.dropped_prompts), "fired": list(self.fired),
                "history": [dict(h) for h in self.history]}

    def load_state(self, state: Mapping[str, object]) -> None:
        """Restore ``state()`` output."""
        self.rollout_restarts = _int(state, "rollout_restarts")
        self.reward_restarts = _int(state, "reward_restarts")
        self.dropped_prompts = [str(u) for u in _list(state, "dropped_prompts")]
        self.fired = [str(f) for f in _list(state, "fired")]
        self.history = [dict(cast(Mapping[str, object], h)) for h in _list(state, "history")]


def _int(state: Mapping[str, object], key: str) -> int:
    value = state.get(key, 0)
    if not isinstance(value, (int, float, str)):
        raise ValueError(f"fault log state: {key} is {value!r}, not a number")
    return int(value)


def _list(state: Mapping[str, object], key: str) -> list[object]:
    value = state.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"fault log state: {key} is {value!r}, not a list")
    return value


class FaultInjector:
    """The run's injection plan beside the loop, consulted by the actor groups for their phases.

    ``at(phase, role)`` is called by a group as its phase starts, on the thread that works for the
    step (``FaultLog.begin``): it first suffers the driver's own faults of that phase (a preemption,
    a lost machine), then returns the faults of the group's actors by index, for the group to arm.
    An empty plan (the default, production) does nothing.
    """

    def __init__(self, plan: FaultPlan, log: FaultLog) -> None:
        self.plan, self.log = plan, log

    def at(self, phase: str, role: str | None = None) -> dict[int, FaultKind]:
        """Fire the driver's faults of ``phase`` now; return ``role``'s (by actor index)."""
        if not self.plan.actor_faults:
            return {}
        step = self.log.step
        for kind in self.plan.take("driver", phase, step, self.log.fired).values():
            inject(kind, f"driver at {phase} of step {step}")
        return self.plan.take(role, phase, step, self.log.fired) if role else {}


class ArmedFaults:
    """Actor side: faults the driver armed for this actor's next call of a phase."""

    def __init__(self, who: str) -> None:
        self.who = who
        self._armed: dict[str, FaultKind] = {}

    def arm(self, phase: str, kind: FaultKind) -> None:
        """Fail with ``kind`` at the start of the next call of ``phase``."""
        self._armed[phase] = kind

    def fire(self, phase: str) -> None:
        """Suffer the fault armed for ``phase``, if any (once)."""
        inject(self._armed.pop(phase, None), f"{self.who} {phase}")


class PromptsExhausted(RuntimeError):
    """A step's prompts kept being dropped (they crash the engines) through every round of
    replacement draws: the dataset is full of such prompts, and a short batch would be trained
    without a word. The run ends with a failure checkpoint; the fault log names the prompts."""


@dataclass(frozen=True)
class Chunk:
    """Positions of the requests sent to one engine in one call; ``retried``: it failed once already."""

    idx: tuple[int, ...]
    retried: bool = False


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

    def retry(self, chunk: Chunk, uids: Sequence[str]) -> list[Chunk]:
        """What to send again after ``chunk`` (the prompts ``uids``, in order) failed, its failure
        already counted (``failed``): the chunk once more whole, then its prompts one by one; nothing
        when it held one prompt and that prompt is now dropped."""
        if len(chunk.idx) > 1:
            return [Chunk(chunk.idx, retried=True)] if not chunk.retried else [Chunk((i,), True) for i in chunk.idx]
        return [] if self.drop_if_spent(uids[0]) else [Chunk(chunk.idx, retried=True)]

    def succeeded(self, uids: Iterable[str]) -> None:
        """``uids`` were generated: they are not the cause of earlier failures."""
        self._undecided -= set(uids)

    def take_charged(self) -> int:
        """Failures now decided and not caused by a dropped prompt (each returned once)."""
        decided = [f for f in self._failures if not f & self._undecided]
        self._failures = [f for f in self._failures if f & self._undecided]
        return sum(1 for f in decided if not f & self.dropped)
