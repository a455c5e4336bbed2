"""The GPU checks (tests/gpu, docs/gpu.md) as a CPU machine can check them: they collect where
vLLM, Ray, Hydra, DeepSpeed and rlplat's other run-time dependencies are missing (the GPU machine
they are meant for may have only torch, transformers and pytest), each carries the ``gpu`` marker,
and without CUDA each is skipped with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
# rlplat's dependencies beyond torch, transformers (and what those two bring), plus the optional
# ones: none may be needed to import tests/gpu or the learner module its tests drive.
ABSENT = ("vllm", "ray", "deepspeed", "hydra", "omegaconf", "datasets", "math_verify", "scipy", "matplotlib",
          "tensorboard", "pyarrow", "wandb")

# Runs in a fresh interpreter: a None entry in sys.modules makes ``import X`` fail and
# ``importlib.util.find_spec(X)`` answer None, as on a machine without the package. Plugin autoload
# is off, as on a machine with a bare pytest (installed plugins could import the blocked packages).
COLLECT = """
import json, sys
for name in {absent!r}:
    sys.modules[name] = None
import pytest

class Record:
    def pytest_collection_finish(self, session):
        self.items = [{{"id": item.nodeid, "gpu": item.get_closest_marker("gpu") is not None,
                        "skip": [m.kwargs.get("reason", "") for m in item.iter_markers("skip")]}}
                      for item in session.items]

record = Record()
code = pytest.main(["tests/gpu", "--collect-only", "-q", "-p", "no:cacheprovider"], plugins=[record])
import rlplat.learner.worker  # what the learner tests' ranks import, DeepSpeed only inside setup()
print("RESULT " + json.dumps({{"code": int(code), "items": getattr(record, "items", [])}}))
"""


def test_the_gpu_checks_collect_without_rlplat_s_other_dependencies_and_skip_without_cuda() -> None:
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", COLLECT.format(absent=ABSENT)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["code"] == 0, proc.stdout[-3000:]
    items = result["items"]
    files = {item["id"].split("::")[0] for item in items}
    assert files == {"tests/gpu/test_gpu_learner.py", "tests/gpu/test_gpu_fp8.py", "tests/gpu/test_gpu_ipc.py"}
    assert all(item["gpu"] for item in items), [item["id"] for item in items if not item["gpu"]]
    if not torch.cuda.is_available():
        unskipped = [item["id"] for item in items if not any("needs a CUDA GPU" in r for r in item["skip"])]
        assert not unskipped, unskipped
