"""The set-up's bubblewrap step (scripts/setup-sandbox.sh, run first by scripts/setup.sh): a missing
sandbox is a warning for a user and an error under CI=true.

Each case runs the real scripts with a PATH of stubs: the tools they need, an ``apt-get`` that fails
(so nothing is installed) and a ``bwrap`` only where the case has one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEP = REPO / "scripts" / "setup-sandbox.sh"
SETUP = REPO / "scripts" / "setup.sh"


def _stub(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture()
def bin_dir(tmp_path: Path) -> Path:
    """A PATH without bwrap: the tools the scripts call, and an apt-get that cannot install."""
    path = tmp_path / "bin"
    path.mkdir()
    for tool in ("bash", "dirname", "id"):
        real = shutil.which(tool)
        assert real is not None, f"{tool} is needed to run the set-up scripts"
        (path / tool).symlink_to(real)
    _stub(path / "apt-get", 'echo "E: Unable to locate package bubblewrap" >&2; exit 100')
    return path


def _run(script: Path, bin_dir: Path, ci: str | None, *args: str,
         extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/"), **(extra_env or {})}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([str(bin_dir / "bash"), str(script), *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_missing_bwrap_fails_the_step_under_ci(bin_dir: Path) -> None:
    res = _run(STEP, bin_dir, "true")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "ERROR: bubblewrap (bwrap) is missing and CI=true" in res.stderr


@pytest.mark.parametrize("ci", [None, "false"])
def test_a_missing_bwrap_is_only_a_warning_outside_ci(bin_dir: Path, ci: str | None) -> None:
    res = _run(STEP, bin_dir, ci)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "WARNING: bubblewrap (bwrap) is missing" in res.stderr


def test_an_installed_bwrap_passes_quietly_under_ci(bin_dir: Path) -> None:
    _stub(bin_dir / "bwrap", "exit 0")
    res = _run(STEP, bin_dir, "true")
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


def test_setup_stops_under_ci_before_installing_anything(bin_dir: Path, tmp_path: Path) -> None:
    """setup.sh runs the step first: without bwrap under CI=true it exits with its error and never
    reaches the interpreter that would create the virtual environment."""
    calls = tmp_path / "python-calls"
    _stub(bin_dir / "python-stub", f'echo "$@" >> {calls}; exit 1')
    res = _run(SETUP, bin_dir, "true", str(tmp_path / "venv"), extra_env={"PYTHON": str(bin_dir / "python-stub")})
    assert res.returncode != 0
    assert "bubblewrap (bwrap) is missing and CI=true" in res.stderr, res.stdout + res.stderr
    assert not calls.exists(), f"setup.sh went on to run {calls.read_text()!r}"
    assert not (tmp_path / "venv").exists()
