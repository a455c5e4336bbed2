"""Running a GPU check in a fresh spawned interpreter: a CUDA IPC receiver and a learner rank each
own their process (and a rank its NCCL group and its device memory, measured with nothing of
another rank in it)."""

from __future__ import annotations

import queue
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import torch

T = TypeVar("T")


def _main(fn: Callable[..., Any], args: tuple[Any, ...], out: Any) -> None:
    """The spawned process: ``("ok", fn(*args))``, or ``("error", traceback)``, put on ``out``."""
    try:
        out.put(("ok", fn(*args)))
    except BaseException:  # noqa: BLE001 - any failure is the report the parent fails with
        out.put(("error", traceback.format_exc()))


def in_spawned_process(fn: Callable[..., T], *args: Any, what: str, timeout_s: float) -> T:
    """``fn(*args)`` (``fn`` a module-level function, its result picklable) in a spawned process;
    fails the test, naming ``what``, when it raises, dies without a report or exceeds ``timeout_s``."""
    ctx = torch.multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_main, args=(fn, args, out))
    proc.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                status, value = out.get(timeout=2.0)
                break
            except queue.Empty:
                if not proc.is_alive() and out.empty():
                    pytest.fail(f"{what} died (exit code {proc.exitcode}) without a report; its output is above")
                if time.monotonic() > deadline:
                    pytest.fail(f"{what} sent no report in {timeout_s:.0f} s")
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status != "ok":
        pytest.fail(f"{what} failed:\n{value}")
    result: T = value
    return result
