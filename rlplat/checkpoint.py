"""Atomic checkpoints: written to a temporary directory, marked complete, then renamed.

Layout: ``<run>/checkpoints/step_000010/{learner/, driver_state.json, COMPLETE}``: the learners'
DeepSpeed state and the driver's ``RunState``. Resume only ever picks a directory with the
``COMPLETE`` marker, so a run killed mid-write (SIGKILL, disk full) leaves the previous checkpoint
as the one resumed from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlbase import atomic_write

MARKER = "COMPLETE"
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


@dataclass(frozen=True)
class RunState:
    """The driver's state after a finished step: with the learners' state, all a resume needs.

    Attributes:
        step: The last finished step (0 before the first).
        weights_version: Version of the learners' weights (``rlplat.runtime.weight_sync``); a resume
            publishes them to the engines under this version.
        curriculum: ``Curriculum.state_dict()`` (RNG, data position, pass-rate store).
        faults: ``FaultLog.state()``: restarts, dropped prompts, fired injections, history (so the
            restart bounds count per run, across resumes).
        lookahead: Asynchronous GRPO only: the next step's scored groups, generated while this
            step trained (``rlplat.runtime.lookahead``), as plain data; empty otherwise.
        precision: ``PrecisionState.state()``: the FP8 mismatch guardrail's streak and fallbacks.
    """

    step: int
    weights_version: int
    curriculum: dict[str, Any]
    faults: dict[str, Any] = field(default_factory=dict)
    lookahead: list[dict[str, Any]] = field(default_factory=list)
    precision: dict[str, Any] = field(default_factory=dict)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written; the message names the one still valid."""


def step_dir(run_dir: Path, step: int) -> Path:
    """Final directory of the checkpoint of ``step``."""
    return run_dir / "checkpoints" / f"step_{step:06d}"


def complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every complete checkpoint, oldest first."""
    root = run_dir / "checkpoints"
    found = []
    for p in root.iterdir() if root.exists() else []:
        m = _STEP_DIR.match(p.name)
        if m and (p / MARKER).exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint, or None."""
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: Path, state: RunState, write_learner: Callable[[str], None], keep: int) -> Path:
    """Write the checkpoint of ``state.step`` atomically and keep only the newest ``keep``.

    Args:
        write_learner: Writes model and optimizer state into the directory it is given.
    """
    step = state.step
    final = step_dir(run_dir, step)
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write_learner(str(tmp / "learner"))
        atomic_write(tmp / "driver_state.json", json.dumps(asdict(state)), fsync=True)
        atomic_write(tmp / MARKER, json.dumps({"step": step}), fsync=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        prev = latest_checkpoint(run_dir)
        still = f"the previous checkpoint {prev[1]} (step {prev[0]}) is still valid" if prev else \
            "no earlier checkpoint exists"
        raise CheckpointError(f"could not write the checkpoint of step {step} ({err.strerror or err}); "
                              f"{still}. Free disk space and resume with resume={run_dir}.") from err
    _prune(run_dir, keep)
    return final


def load_run_state(path: Path) -> RunState:
    """The driver state saved with the checkpoint at ``path``."""
    return RunState(**json.loads((path / "driver_state.json").read_text()))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(run_dir: Path, keep: int) -> None:
    for _, path in complete_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)
