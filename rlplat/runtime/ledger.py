"""StepLedger: where a GRPO run stands, one record with named transitions.

Four questions share one answer: which step finished last (and what a checkpoint of it holds),
which step the newest complete checkpoint holds, whether the learners are in the middle of an
update (their weights then match no checkpointable state), and which weights version the engines
hold. The loop moves the ledger through its transitions in this order each step::

    start_update -> finish_update -> [synced] -> [saved]

and reads it to decide what a failure or a preemption may checkpoint (``unsaved``) and whether the
engines need the learners' weights now (``sync_due``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rlplat.checkpoint import RunState, latest_checkpoint, load_run_state
from rlplat.faults import FaultLog
from rlplat.runtime.lookahead import sync_due
from rlplat.runtime.precision import PrecisionState


@dataclass
class StepLedger:
    """The run's position.

    Attributes:
        state: The ``RunState`` after the last finished step: what the learners hold (with its
            weights version) and what a checkpoint of that step contains.
        saved_step: The newest step with a complete checkpoint (0: none).
        engine_version: The weights version the engines hold.
        updating: True from the start of a step's training until it finished: the learners' weights
            are then half-way between two states, and no checkpoint of them is consistent.
    """

    state: RunState
    saved_step: int
    engine_version: int = 0
    updating: bool = False

    @classmethod
    def fresh(cls, curriculum: dict[str, Any]) -> StepLedger:
        """A new run: step 0, nothing saved, engines and learners on version 0."""
        return cls(RunState(0, 0, curriculum), saved_step=0)

    @classmethod
    def resumed(cls, state: RunState) -> StepLedger:
        """A run resumed from the checkpoint of ``state`` (the engines get its weights next)."""
        return cls(state, saved_step=state.step, engine_version=state.weights_version)

    @property
    def step(self) -> int:
        """The last finished step."""
        return self.state.step

    def start_update(self) -> int:
        """The learners start training; returns the weights version they train from."""
        self.updating = True
        return self.state.weights_version

    def finish_update(self, step: int, curriculum: dict[str, Any]) -> None:
        """``step`` trained: the learners hold the next version, and a checkpoint of the new state
        loses nothing."""
        self.state = replace(self.state, step=step, weights_version=self.state.weights_version + 1,
                             curriculum=curriculum)
        self.updating = False

    def synced(self, version: int) -> None:
        """The engines now hold ``version``."""
        self.engine_version = version

    def saved(self) -> None:
        """A complete checkpoint of ``state`` exists."""
        self.saved_step = self.state.step

    @property
    def unsaved(self) -> bool:
        """Whether ``state`` is consistent and newer than the newest checkpoint (a failure or a
        preemption should checkpoint it before the run stops)."""
        return not self.updating and self.state.step > self.saved_step

    def sync_due(self, max_staleness: int) -> bool:
        """Whether samples generated next would lag the learners by more than ``max_staleness``."""
        return sync_due(max_staleness, self.state.weights_version, self.engine_version)


@dataclass
class RunRecords:
    """What a checkpoint carries beside the ledger: what failed and what was done about it
    (restart counts, dropped prompts, fired injections), and the FP8 guardrail's state."""

    faults: FaultLog = field(default_factory=FaultLog)
    precision: PrecisionState = field(default_factory=PrecisionState)

    @classmethod
    def restored(cls, run_dir: Path, resume: bool) -> RunRecords:
        """The records of the checkpoint a resume continues from (empty for a new run), so that
        restart bounds, injected faults and the guardrail count per run."""
        records = cls()
        found = latest_checkpoint(run_dir) if resume else None
        if found is not None:
            state = load_run_state(found[1])
            records.faults.load_state(state.faults)
            records.precision = PrecisionState.from_state(state.precision)
        return records
