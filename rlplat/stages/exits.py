"""How a run or a stage's Ray job ends: its exit code, its one message, and the config error it hands on.

The launcher (``rlplat.launch``) and a stage's Ray job (``rlplat.stages.job_entry``) end the same
way: 0 done, 1 failed, 2 configuration or data refused (a ``ConfigError``), 143 stopped after a
checkpoint (``Preempted``). ``run_guarded`` maps an exception to that code and prints one message.

A job refusing its config writes the error (field, problem, fix, message, exit code) to
``stages/<name>/error.json`` (``write_config_error``; the path: ``rlplat.stages.base.config_error_path``).
The launcher's side (``rlplat.stages.ray_jobs``) reads it back (``read_config_error``) and raises the
same ``ConfigError`` as if the stage had run in its own process.

The launcher, the job (``job_entry``), the pipeline and ``ray_jobs`` all import this module and it
imports none of them (an import-linter contract in pyproject.toml keeps it so): that is what keeps
the stage runners free of an import cycle.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rlbase import atomic_write
from rlplat.config.errors import ConfigError
from rlplat.runs import how_to_continue
from rlplat.runtime.signals import Preempted

T = TypeVar("T")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_PREEMPTED = 143


class StageFailed(RuntimeError):
    """A stage's Ray job failed; ``log_path`` holds its output (and ``error.log`` its traceback)."""

    def __init__(self, stage: str, job_id: str, exit_code: int | None, log_path: Path) -> None:
        self.stage, self.job_id, self.exit_code, self.log_path = stage, job_id, exit_code, log_path
        code = "no exit code" if exit_code is None else f"exit code {exit_code}"
        super().__init__(f"stage {stage} failed (Ray job {job_id}, {code}); its log: {log_path}")


def run_guarded(run_dir: Path, work: Callable[[], T]) -> tuple[int, T | None]:
    """Run ``work``; returns the exit code and its result (None unless it succeeded). How it
    ended is printed as one clear message: a ``ConfigError`` (2), preemption (143), any other
    failure (1, traceback in ``error.log``; a failed stage job wrote its own there)."""
    try:
        return EXIT_OK, work()
    except StageFailed as err:
        print(f"rlplat: the run failed: {err}\n(the stage's traceback, if it got that far: {run_dir / 'error.log'}) "
              f"{how_to_continue(run_dir)}", file=sys.stderr)
        return EXIT_FAILED, None
    except ConfigError as err:
        print(f"rlplat: {err}", file=sys.stderr)
        return EXIT_CONFIG, None
    except Preempted as err:
        print(f"rlplat: {err}", file=sys.stderr)
        return EXIT_PREEMPTED, None
    except Exception as err:  # noqa: BLE001 - every failure ends in one clear message
        (run_dir / "error.log").write_text(traceback.format_exc())
        print(f"rlplat: the run failed: {err}\n(traceback in {run_dir / 'error.log'}) {how_to_continue(run_dir)}",
              file=sys.stderr)
        return EXIT_FAILED, None


def write_config_error(path: Path, err: ConfigError) -> None:
    """Record ``err`` at ``path`` (JSON: ``field``, ``problem``, ``fix``, ``message``: the paragraph
    printed, ``exit_code``), atomically, so that the launcher never reads half of it."""
    record = {"field": err.field, "problem": err.problem, "fix": err.fix, "message": str(err),
              "exit_code": EXIT_CONFIG}
    atomic_write(path, json.dumps(record, indent=2), fsync=True)


def read_config_error(path: Path) -> ConfigError | None:
    """The ``ConfigError`` recorded at ``path`` by ``write_config_error``, or None when there is none
    (the job ended with exit code 2 before it could write one: a bad command line, a crash)."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return ConfigError(record["field"], record["problem"], record["fix"])
