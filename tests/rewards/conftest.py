"""Fixtures of the rewards tests: sandbox modes, helper reward modules importable by pool workers."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    # Pool workers are spawned processes: they import helper reward modules by name from sys.path,
    # which multiprocessing copies from this process.
    sys.path.insert(0, str(HERE))

def bwrap_works() -> bool:
    """Whether bubblewrap is installed and usable here (probed through the real sandbox)."""
    if shutil.which("bwrap") is None:
        return False
    from rewards.sandbox import probe_isolation

    try:
        return probe_isolation("auto", None, 64000).bwrap is not None
    except RuntimeError:
        return False


@pytest.fixture(scope="session")
def has_bwrap() -> bool:
    return bwrap_works()


@pytest.fixture(params=["bwrap", "fallback"], scope="session")
def sandbox_mode(request: pytest.FixtureRequest) -> str:
    """Each sandbox property is checked with bubblewrap and with the no-bubblewrap fallback.

    Without a working bubblewrap its half is skipped, except under ``CI=true``, where it fails: CI
    must check the isolation that production uses (scripts/setup-sandbox.sh installs it).
    """
    if request.param == "bwrap" and not bwrap_works():
        reason = "bubblewrap not installed or not usable here (apt-get install bubblewrap)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}: the bubblewrap sandbox tests cannot run", pytrace=False)
        pytest.skip(reason)
    return request.param
