"""Fixtures of the integration tests: one uninterrupted reference run shared by the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from launch_helpers import launch


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FAST config run to completion (4 steps, checkpoints at 2 and 4)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    rc, out = launch(run_dir)
    assert rc == 0, out[-3000:]
    return run_dir
