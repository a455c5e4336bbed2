"""Running ``python -m rlplat.launch`` from tests: a run, a resume.

Output goes to a log file beside the run directory, never to a pipe nobody reads (a pipe fills at
64 KiB and then blocks the launcher). Every launcher runs in its own process group, so a test can
SIGKILL it together with everything it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from rlplat.metrics import read_metrics

FAST = [
    "grpo.total_steps=4", "grpo.prompts_per_step=8", "grpo.samples_per_prompt=4", "grpo.global_batch=16",
    "sft.steps=30", "sft.batch_size=32", "checkpoint.every=2", "rollout.sampling.max_new_tokens=24",
    "data.synthetic.num_train=256", "data.synthetic.num_rl=64", "cluster.dashboard=false",
]
# Keys a resumed run must reproduce exactly (timing keys cannot).
REPRODUCED = ("pass_rate", "reward/mean", "kl", "entropy", "response_length/mean", "tokens/generated",
              "weights/version", "loss/policy", "sync/bytes")
PLUGINS = Path(__file__).resolve().parent / "plugins"
TIMEOUT_S = 600


def plugin_env() -> dict[str, str]:
    """The environment with the test plugins (``plugins/``) importable by the driver and Ray workers."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))}


def log_path(run_dir: Path) -> Path:
    """Where the launcher's output for ``run_dir`` goes (appended to by every launch of that run)."""
    return run_dir.parent / f"{run_dir.name}.launcher.log"


def start(run_dir: Path, *extra: str, fast: bool = True, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a new run in the background (``FAST`` settings unless ``fast=False``)."""
    args = [f"hydra.run.dir={run_dir}", *(FAST if fast else []), *extra]
    return _popen(args, run_dir, env)


def _popen(args: Sequence[str], run_dir: Path, env: Mapping[str, str] | None,
           cwd: Path | None = None) -> subprocess.Popen[str]:
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path(run_dir), "a", encoding="utf-8") as log:
        return subprocess.Popen([sys.executable, "-m", "rlplat.launch", *args], stdout=log, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True, env=None if env is None else dict(env), cwd=cwd)


def finish(proc: subprocess.Popen[str], run_dir: Path, timeout: float = TIMEOUT_S) -> tuple[int, str]:
    """Wait for the run (SIGKILLing its process group past ``timeout``); returns its exit code and output."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, log_path(run_dir).read_text(encoding="utf-8", errors="replace")


def launch(run_dir: Path, *extra: str, fast: bool = True, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """A new run to completion; returns its exit code and output."""
    return finish(start(run_dir, *extra, fast=fast, env=env), run_dir)


def launch_as_given(args: Sequence[str], run_dir: Path, cwd: Path) -> tuple[int, str]:
    """``python -m rlplat.launch ARGS`` in ``cwd``, nothing added (``run_dir``: the run directory
    ``args`` name, for the log beside it), to completion; returns its exit code and output."""
    return finish(_popen(args, run_dir, None, cwd), run_dir)


def resume(run_dir: Path, *extra: str, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """``resume=run_dir`` to completion; returns its exit code and output."""
    return finish(_popen([f"resume={run_dir}", *extra], run_dir, env), run_dir)


def assert_reproduces(reference: Path, resumed: Path, keys: Sequence[str] = REPRODUCED) -> None:
    """The resumed run's metrics equal the uninterrupted run's, step for step, for ``keys``."""
    ref, got = read_metrics(reference / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    assert [r["step"] for r in got] == [r["step"] for r in ref]
    for a, b in zip(ref, got):
        for key in keys:
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), (a["step"], key)


def placement(run_dir: Path) -> dict[str, Any]:
    """The run's ``placement.json`` (actor pids and nodes)."""
    import json

    return dict(json.loads((run_dir / "placement.json").read_text()))


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(url: str, proc: subprocess.Popen[Any], timeout_s: float, what: str) -> None:
    """Poll ``url`` until it answers; fail (with ``what``) if ``proc`` exits or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, what
            time.sleep(0.5)
