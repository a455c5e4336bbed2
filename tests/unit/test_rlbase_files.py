"""Atomic writes: a run's files get the modes ``open`` would give them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from rlbase import atomic_write


def test_an_atomic_write_leaves_the_file_as_the_umask_says(tmp_path: Path) -> None:
    """mkstemp's 0600 made every run file (config.yaml, report.md, the weights' index) unreadable to
    the rest of a team sharing the run directory on a cluster file system."""
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "shared.txt", "x")
        os.umask(0o077)
        atomic_write(tmp_path / "private.txt", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
