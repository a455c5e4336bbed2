"""The GRPO loop's step ledger and the records a checkpoint carries beside it (pure, no actors)."""

from __future__ import annotations

from pathlib import Path

from rlplat.checkpoint import RunState, save_checkpoint
from rlplat.runtime.ledger import RunRecords, StepLedger


def test_a_step_moves_the_ledger_through_its_transitions() -> None:
    ledger = StepLedger.fresh({"rng": 1})
    assert (ledger.step, ledger.saved_step, ledger.engine_version, ledger.unsaved) == (0, 0, 0, False)
    assert ledger.start_update() == 0 and ledger.updating and not ledger.unsaved  # mid-update: nothing to save
    ledger.finish_update(1, {"rng": 2})
    assert ledger.state == RunState(1, 1, {"rng": 2}) and ledger.unsaved
    assert ledger.sync_due(1) and not ledger.sync_due(2)  # the next samples would lag by 2
    ledger.synced(1)
    ledger.saved()
    assert not ledger.unsaved and ledger.saved_step == 1


def test_a_resumed_ledger_starts_where_its_checkpoint_stopped() -> None:
    ledger = StepLedger.resumed(RunState(4, 4, {}))
    assert (ledger.step, ledger.saved_step, ledger.engine_version, ledger.unsaved) == (4, 4, 4, False)


def test_records_come_back_from_the_checkpoint_a_resume_starts_from(tmp_path: Path) -> None:
    records = RunRecords()
    records.faults.rollout_restarts, records.precision.kl_streak = 2, 1
    state = RunState(3, 3, {}, faults=records.faults.state(), precision=records.precision.state())
    save_checkpoint(tmp_path, state, lambda d: Path(d).mkdir(), keep=2)
    assert RunRecords.restored(tmp_path, resume=False) == RunRecords()
    restored = RunRecords.restored(tmp_path, resume=True)
    assert restored.faults.state() == records.faults.state() and restored.precision == records.precision
