"""Helpers shared by the benchmarks: machine facts, medians, reference bandwidths, models, launcher.

The reference measurements here (memory copy, /dev/shm write and read, matmul FLOP rate) are the
physical limits each benchmark reports its own figures against, measured in the same process and
the same invocation so that the ratios are not skewed by whatever else the shared machine is doing
at another time.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GIB = 1 << 30

from rlplat.config.schema import ModelShape  # noqa: E402 - after the path set-up above

# The embedded default's shape (rlplat/config/schema.py ModelShape defaults) and the ~100M Llama of
# the measurement in docs/design.md (hidden 768, 16 layers, GQA 12/4 heads: 100.8M parameters with the char
# vocabulary; the launcher's ``model=llama_100m``).
SHAPES: dict[str, ModelShape] = {"tiny": ModelShape(), "100m": ModelShape(768, 2048, 16, 12, 4)}


def build_model(name: str, root: Path) -> Path:
    """A randomly initialised Llama of ``SHAPES[name]`` plus the char tokenizer under ``root/<name>``
    (reused if it already exists)."""
    from rlplat.models.tiny import build_tiny_llama

    return build_tiny_llama(root / name, SHAPES[name], seed=0)


def count_params(model_dir: Path) -> int:
    """Number of parameters in a model directory's safetensors file."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        for k in f.keys():  # safe_open has keys(), not __iter__
            n = 1
            for s in f.get_slice(k).get_shape():
                n *= s
            total += n
    return total


# ------------------------------------------------------------------------------- statistics


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and count of ``values`` (the median is the figure to quote)."""
    vals = list(values)
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def timed_median(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    """Wall times of ``repeats`` calls of ``fn``, summarised."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return summary(times)


# ------------------------------------------------------------------------------- the machine


def machine_info() -> dict[str, Any]:
    """CPU model, core count, memory, versions and the current load average."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem_gib, 1),
            "python": platform.python_version(), "torch": torch.__version__, "loadavg": os.getloadavg()}


def memcpy_bandwidth(nbytes: int = GIB, threads: int = 1, repeats: int = 5) -> dict[str, float]:
    """Bytes per second of ``dst.copy_(src)`` on ``nbytes``-byte tensors with ``threads`` threads.

    Counts each byte once (a copy reads and writes it); both buffers are touched first so that
    page faults are not timed. Returns the summary of GB/s (1e9 bytes/s) over ``repeats`` copies.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        src = torch.ones(nbytes, dtype=torch.uint8)
        dst = torch.zeros(nbytes, dtype=torch.uint8)
        dst.copy_(src)
        times = timed_median(lambda: dst.copy_(src), repeats)
    finally:
        torch.set_num_threads(old)
    return _gbps(nbytes, times)


def read_bandwidth(nbytes: int = GIB, threads: int = 1, repeats: int = 5) -> dict[str, float]:
    """Bytes per second read by ``t.sum()`` over an ``nbytes`` float32 tensor (memory-bound): the
    rate at which a decode step can stream the weights. Summary of GB/s over ``repeats``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = torch.ones(nbytes // 4, dtype=torch.float32)
        t.sum()
        times = timed_median(lambda: t.sum(), repeats)
    finally:
        torch.set_num_threads(old)
    return _gbps(nbytes, times)


def shm_bandwidth(nbytes: int = GIB, directory: str = "/dev/shm", repeats: int = 3) -> dict[str, Any]:
    """Write then read a ``nbytes`` file in ``directory`` the way the weight sync does.

    Write: ``f.write(memoryview)`` of a uint8 tensor (``rlplat.sync.transport.write_bucket``).
    Read: ``torch.from_file`` (as ``read_bucket``) then ``copy_`` into a preallocated tensor (what
    the engine does with each bucket view). Single thread, as in the learner and engine.
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    path = os.path.join(directory, f"rlplat-bench-{os.getpid()}")
    src = torch.ones(nbytes, dtype=torch.uint8)
    dst = torch.zeros(nbytes, dtype=torch.uint8)
    writes, reads = [], []
    try:
        for _ in range(repeats):
            Path(path).unlink(missing_ok=True)
            t0 = time.perf_counter()
            with open(path, "wb") as f:
                f.write(src.numpy().data)  # the array's own buffer: no copy
            t1 = time.perf_counter()
            dst.copy_(torch.from_file(path, shared=False, size=nbytes, dtype=torch.uint8))
            t2 = time.perf_counter()
            writes.append(t1 - t0)
            reads.append(t2 - t1)
    finally:
        Path(path).unlink(missing_ok=True)
        torch.set_num_threads(old)
    return {"write": _gbps(nbytes, summary(writes)), "read_copy": _gbps(nbytes, summary(reads))}


def matmul_gflops(m: int = 256, k: int = 768, n: int = 2048, threads: int = 2, repeats: int = 20) -> float:
    """Median fp32 GFLOP/s of an ``(m, k) @ (k, n)`` matmul: the compute ceiling of a decode step."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        t = timed_median(lambda: a @ b, repeats)["median"]
    finally:
        torch.set_num_threads(old)
    return 2 * m * k * n / t / 1e9


def _gbps(nbytes: int, times: dict[str, float]) -> dict[str, float]:
    """GB/s summary from a time summary (fastest time gives the max rate)."""
    return {"median": nbytes / times["median"] / 1e9, "min": nbytes / times["max"] / 1e9,
            "max": nbytes / times["min"] / 1e9, "n": times["n"]}


# ------------------------------------------------------------------------------- the launcher

STEP_KEYS = ("time/step_s", "time/rollout_s", "time/reward_s", "time/train_s", "time/sync_s",
             "tokens_per_s", "tokens/generated", "response_length/mean", "sync/bytes")


def run_launcher(run_dir: Path, overrides: Sequence[str], timeout_s: float = 3600) -> list[dict[str, Any]]:
    """Run ``python -m rlplat.launch OVERRIDES hydra.run.dir=RUN_DIR``; returns its GRPO metrics lines.

    The launcher's output goes to ``RUN_DIR/launch.log``; a non-zero exit raises with its tail.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "rlplat.launch", *overrides, f"hydra.run.dir={run_dir}"]
    log = run_dir / "launch.log"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout_s,
                              check=False)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"launcher exited {proc.returncode}: {' '.join(cmd)}\n{tail}")
    metrics = run_dir / "metrics.jsonl"  # none when no GRPO stage ran
    return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.is_file() else []


def launch_until(run_dir: Path, overrides: Sequence[str], done: Path, retries: int) -> None:
    """Run the launcher until the file ``done`` exists (at once if it does).

    This machine is shared, and Ray's memory monitor may kill a worker when others' jobs fill the
    memory. A failed run is resumed (``resume=DIR``), which continues from its last checkpoint and
    reproduces the uninterrupted run (docs/design.md, contract 4); a run with nothing to resume from is
    started again.
    """
    from rlplat.checkpoint import latest_checkpoint

    for attempt in range(retries + 1):
        if done.is_file():
            return
        if (run_dir / "config.yaml").is_file() and not (latest_checkpoint(run_dir) or (run_dir / "stages").is_dir()):
            shutil.rmtree(run_dir)
        resume = (run_dir / "config.yaml").is_file()
        cmd = [sys.executable, "-m", "rlplat.launch",
               *([f"resume={run_dir}"] if resume else [*overrides, f"hydra.run.dir={run_dir}"])]
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / f"launch{attempt}.log", "w") as out:
            proc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=False,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if proc.returncode != 0:
            print(f"{run_dir.name}: launcher exited {proc.returncode} (attempt {attempt + 1}; see "
                  f"{out.name})", flush=True)
    if not done.is_file():
        raise RuntimeError(f"{run_dir} did not finish after {retries + 1} attempts")


def step_medians(lines: Sequence[dict[str, Any]], skip: int = 1) -> dict[str, dict[str, float]]:
    """Summary of every ``STEP_KEYS`` metric over the steps after the first ``skip`` (warm-up)."""
    kept = [m for m in lines if m["step"] > skip]
    return {k: summary([float(m[k]) for m in kept if k in m]) for k in STEP_KEYS}


def save_json(path: Path | None, data: dict[str, Any]) -> str:
    """Write ``data`` as JSON to ``path`` when given (atomically); returns the text."""
    text = json.dumps(data, indent=2, default=str)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return text


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    """Print ``data`` as JSON and write it to ``path`` when given."""
    print(save_json(path, data))
