"""``python -m rlplat.doctor`` on this machine, as a user runs it: exit 0, and a table that names every
check with PASS, or SKIP where it does not apply (no GPU here, no ``--fp8``: that check starts the
actors a second time, and the suite's FP8 run covers the emulated engines); ``--json`` and
``--keep`` are read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlplat.doctor.__main__ import LazySmoke, doctor_checks

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_the_doctor_passes_on_this_machine(tmp_path: Path) -> None:
    # RAY_ADDRESS would make the doctor join that cluster: this test is about a local instance.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-m", "rlplat.doctor", "--json", str(tmp_path / "doctor.json"),
                          "--keep", str(tmp_path / "smoke")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    rows = {line.split("  ")[0]: line for line in out.stdout.splitlines()}
    checks = doctor_checks(LazySmoke("cpu", False, tmp_path))
    gpu = json.loads((tmp_path / "doctor.json").read_text())["device"] == "gpu"
    for check in checks:
        assert check.name in rows, f"{check.name} is not in the table:\n{out.stdout}"
        expected = "SKIP" if (check.name == "sleep/wake" and not gpu) or check.name == "fp8 engine" else "PASS"
        assert f"  {expected}  " in rows[check.name], rows[check.name]
    assert f"(1/{len(checks)}) versions ..." in out.stderr  # the progress lines
    saved = json.loads((tmp_path / "doctor.json").read_text())
    assert saved["ok"] is True and saved["fp8"] is False and len(saved["checks"]) == len(checks)
    assert (tmp_path / "smoke" / "initial_model" / "config.json").is_file()
    details = {c["name"]: c["detail"] for c in saved["checks"]}
    assert "the engine's greedy output equals the learner's" in details["weight sync"]
