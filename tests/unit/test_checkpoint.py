"""Atomic checkpoints: incomplete ones are never picked, a failed write keeps the previous one."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rlplat.checkpoint import CheckpointError, RunState, latest_checkpoint, load_run_state, save_checkpoint, step_dir


def _state(step: int, **curriculum: int) -> RunState:
    return RunState(step=step, weights_version=step, curriculum=dict(curriculum))


def _writer(content: str = "weights") -> Callable[[str], None]:
    def write(directory: str) -> None:
        Path(directory).mkdir()
        (Path(directory) / "model.bin").write_text(content)
    return write


def test_save_then_latest_and_state_roundtrip(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _state(2, a=1), _writer(), keep=2)
    save_checkpoint(tmp_path, _state(4, b=2), _writer(), keep=2)
    step, path = latest_checkpoint(tmp_path)  # type: ignore[misc]
    assert step == 4 and load_run_state(path) == _state(4, b=2)
    assert (path / "learner" / "model.bin").read_text() == "weights"


def test_keep_prunes_old_checkpoints(tmp_path: Path) -> None:
    for s in (1, 2, 3):
        save_checkpoint(tmp_path, _state(s), _writer(), keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000002", "step_000003"]


def test_incomplete_or_temporary_checkpoints_are_ignored(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _state(2), _writer(), keep=3)
    # A driver killed mid-write leaves a temporary directory, or a final one without the marker.
    (tmp_path / "checkpoints" / "step_000004.tmp123").mkdir()
    step_dir(tmp_path, 6).mkdir()
    (step_dir(tmp_path, 6) / "driver_state.json").write_text(json.dumps({"step": 6}))
    assert latest_checkpoint(tmp_path)[0] == 2  # type: ignore[index]


def test_disk_full_keeps_the_previous_checkpoint_and_says_so(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _state(2), _writer(), keep=2)

    def full(directory: str) -> None:
        Path(directory).mkdir()
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointError) as err:
        save_checkpoint(tmp_path, _state(4), full, keep=2)
    assert "No space left on device" in str(err.value) and "step_000002" in str(err.value)
    assert latest_checkpoint(tmp_path)[0] == 2  # type: ignore[index]
    assert not any(".tmp" in p.name for p in (tmp_path / "checkpoints").iterdir())
