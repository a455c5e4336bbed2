"""The doctor's check runner: pure (no Ray, no torch), so that its contract is tested in milliseconds.

A ``Check`` is a name, a function that returns a one-line detail, a deadline, and the names of the
checks it needs. ``run_checks`` runs the checks in the order given, one at a time, and returns one
``Result`` per check, in that order:

* PASS: the function returned within its deadline; its detail is kept.
* SKIP: the function raised ``Skip`` (the check does not apply here: no GPU, a flag not given), or
  a check it needs did not pass, in which case it is not run at all. A SKIP is not a failure.
* FAIL: the function raised anything else, or gave no answer within its deadline. The detail is the
  error's first line; the fix is the error's own (``CheckFailed``, or any error with a ``fix``
  attribute, such as ``ConfigError``), else the check's default fix.

A failing check never stops the run: only the checks that need it are skipped.

Checks run in the caller's thread, under a deadline set with ``SIGALRM`` (``within``): Ray ties the
processes it starts to the thread that starts them (Linux's parent-death signal), so a check that
starts Ray in a helper thread would see Ray killed once that thread ended. Python runs the alarm's
handler between bytecodes, and Ray's waits return to Python often, so a check past its deadline is
interrupted (``DeadlineExceeded``) and its clean-up runs. Outside the main thread there is no alarm,
and no deadline.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

Status = Literal["PASS", "FAIL", "SKIP"]


class Skip(Exception):
    """The check does not apply here; the message says why (it becomes the SKIP's detail)."""


class CheckFailed(Exception):
    """A check's verdict of failure: ``problem`` (what was found) and ``fix`` (what to do, or "")."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem)


@dataclass(frozen=True)
class Check:
    """One check.

    Attributes:
        name: Its name in the table (unique among the checks of a run).
        run: Does the check; returns a one-line detail (PASS), raises ``Skip`` or fails.
        deadline_s: After this long without an answer the check FAILs and the run goes on.
        needs: Names of earlier checks that must PASS for this one to run.
        fix: The fix shown when it fails with an error that carries none.
    """

    name: str
    run: Callable[[], str]
    deadline_s: float
    needs: tuple[str, ...] = ()
    fix: str = ""


@dataclass(frozen=True)
class Result:
    """One row of the table: the check's name, verdict, seconds, detail and (a FAIL's) fix."""

    name: str
    status: Status
    seconds: float
    detail: str
    fix: str = ""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_checks(checks: Sequence[Check], progress: Callable[[str], None] = _stderr) -> list[Result]:
    """Run ``checks`` in order (see the module docstring); ``progress`` gets a line as each check
    starts and one as it ends. Raises ``ValueError`` if a name repeats or a check needs a check
    that does not come before it (a mistake of the caller, not of the machine)."""
    _check_order(checks)
    results: dict[str, Result] = {}
    for i, check in enumerate(checks, 1):
        blocked = [n for n in check.needs if results[n].status != "PASS"]
        if blocked:
            first = results[blocked[0]]
            result = Result(check.name, "SKIP", 0.0, f"needs '{first.name}', which {_past(first.status)}")
        else:
            progress(f"[doctor] ({i}/{len(checks)}) {check.name} ...")
            result = _run_one(check)
        progress(f"[doctor] ({i}/{len(checks)}) {check.name}: {result.status} ({result.seconds:.1f} s)"
                 + (f" - {result.detail}" if result.status != "PASS" else ""))
        results[check.name] = result
    return list(results.values())


def exit_code(results: Sequence[Result]) -> int:
    """0 when no check failed (a SKIP is fine), 1 otherwise."""
    return 1 if any(r.status == "FAIL" for r in results) else 0


def _check_order(checks: Sequence[Check]) -> None:
    seen: set[str] = set()
    for check in checks:
        if check.name in seen:
            raise ValueError(f"two checks are named '{check.name}'")
        missing = [n for n in check.needs if n not in seen]
        if missing:
            raise ValueError(f"check '{check.name}' needs {missing}, which do not come before it")
        seen.add(check.name)


def _past(status: Status) -> str:
    return {"FAIL": "failed", "SKIP": "was skipped", "PASS": "passed"}[status]


class DeadlineExceeded(BaseException):
    """Raised in the main thread when ``within``'s deadline passes. A ``BaseException``, like
    ``KeyboardInterrupt``, so that the code it interrupts does not take it for its own error."""


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Raise ``DeadlineExceeded`` in the body if it runs longer than ``seconds`` (main thread only:
    elsewhere the body runs without a deadline). Restores the previous ``SIGALRM`` handler."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum: int, frame: object) -> None:
        raise DeadlineExceeded(f"no answer within its deadline of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_one(check: Check) -> Result:
    """``check.run()`` within ``check.deadline_s``, as a ``Result``."""
    start = time.perf_counter()
    try:
        with within(check.deadline_s):
            detail = check.run()
    except DeadlineExceeded as err:
        return Result(check.name, "FAIL", time.perf_counter() - start, str(err), check.fix)
    except Skip as skip:
        return Result(check.name, "SKIP", time.perf_counter() - start, str(skip))
    except Exception as err:  # noqa: BLE001 - every error is the check's verdict
        return Result(check.name, "FAIL", time.perf_counter() - start, _describe(err),
                      getattr(err, "fix", "") or check.fix)
    return Result(check.name, "PASS", time.perf_counter() - start, detail)


def _describe(err: BaseException) -> str:
    """An error's first line: the problem of a ``CheckFailed``, else its type and message."""
    if isinstance(err, CheckFailed):
        text = err.problem
    elif hasattr(err, "problem") and hasattr(err, "field"):  # rlbase.FieldError, ConfigError
        text = f"{err.field}: {err.problem}"
    else:
        text = f"{type(err).__name__}: {err}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
