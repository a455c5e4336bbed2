"""In-sandbox test harness for the ``code`` reward (stdlib only; any Python >= 3.8).

It runs inside the sandbox as ``python harness.py`` next to ``solution.py`` (the candidate) and
``job.json`` (tests and options); it is read as text by ``rewards.code`` and never imported there.

Protocol: the first line of stdin is a random nonce. The harness reads it before any candidate code
runs, keeps the result channel (a duplicate of stdout) to itself and sends the candidate's own
stdout to /dev/null. Only after every test has run does it write one line, ``<nonce> <json>``, with
the per-test results, and exit at once with ``os._exit(0)`` (no atexit hooks of the candidate).
The scorer accepts exactly one well-formed line with the right nonce from a sandbox that exited 0;
anything else (``sys.exit``/``os._exit`` before the tests ran, a killed harness, a closed or forged
result channel) scores 0.

Formats (``job["format"]``):
A candidate that raises SystemExit while loading (``sys.exit``, ``exit()``) fails every test, like
one that calls ``os._exit``; other exceptions while loading do not stop the tests.

* ``assert``: every top-level statement containing an ``assert`` is a test; other statements
  (imports, helper definitions) are setup run in order. Candidate functions are called through a
  guard that rejects return values whose classes define comparison or truthiness hooks in the
  candidate's code (the "always equal" object hack).
* ``humaneval``: as in the HumanEval harness, the test program runs in the candidate's module
  namespace (a copy of its globals, candidate functions guarded as above), so ``check`` may call
  helpers defined beside the entry point or the entry point by name. Then each top-level statement
  of ``check``'s body that contains an ``assert`` is a test, run in that namespace with
  ``candidate`` (and the entry point's own name) bound to the guarded entry point. A ``check``
  whose body has no ``assert`` runs whole: ``check(candidate)`` not raising is the one test.
* ``stdio``: ``solution.py`` runs as a separate process per case, stdin fed from the case, stdout
  compared token-wise (floats within ``float_tol``). The harness makes itself non-dumpable so that
  the candidate (same uid) cannot read its memory.

Departure from plain exec-based graders: a per-test timeout (SIGALRM) lets a hanging test fail
alone instead of costing the whole program; the sandbox's wall-clock deadline is the backstop.

Typing: annotations only (``from __future__ import annotations``, ``typing`` imported for the type
checker alone), so the sandboxed interpreter pays no import for them.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import signal
import subprocess
import sys
import types

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import Any

    Fn = Callable[..., Any]
    Guard = Callable[[Fn], Fn]
    Items = list[tuple[bool, types.CodeType]]
    Namespace = dict[str, Any]
    Report = dict[str, Any]
    Snapshot = dict[type, dict[str, object]]

SUSPECT_HOOKS = frozenset(
    ["__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__", "__contains__",
     "__sub__", "__rsub__", "__abs__", "__float__", "__int__", "__index__", "__round__", "__hash__",
     "__instancecheck__", "__getattribute__", "__class__"]
)
MAX_ELEMENTS = 1_000_000


class TestTimeout(BaseException):
    """Raised by SIGALRM inside a test; a BaseException so candidate ``except Exception`` misses it."""


class UntrustedValue(Exception):
    """A candidate function returned (or yielded) a value whose class overrides comparison hooks."""


def trusted_snapshot() -> Snapshot:
    """Stdlib heap classes that may be returned, with their hooks as they are before the candidate runs."""
    import collections
    import decimal
    import fractions

    roots = [fractions.Fraction, decimal.Decimal, collections.Counter, collections.OrderedDict,
             collections.defaultdict, collections.deque]
    classes = {klass for root in roots for klass in root.__mro__}  # with their bases (numbers.Rational...)
    return {cls: {k: cls.__dict__.get(k) for k in SUSPECT_HOOKS} for cls in classes}


def make_guard(snapshot: Snapshot, _type: Callable[[object], type] = type,
               _isinstance: Callable[[object, type | tuple[type, ...]], bool] = isinstance,
               _vars: Callable[[object], Mapping[str, object]] = vars) -> Guard:
    """A checker of return values, closed over builtins captured before the candidate runs."""
    heap_flag = 1 << 9
    containers = (list, tuple, set, frozenset, dict)

    def class_ok(cls: type) -> bool:
        for klass in cls.__mro__:
            if not klass.__flags__ & heap_flag:
                continue  # a static (C) type: its hooks cannot be changed by Python code
            saved = snapshot.get(klass)
            own = _vars(klass)
            if saved is not None:
                if any(own.get(k) is not v for k, v in saved.items()):
                    return False  # a trusted stdlib class was monkeypatched
            elif any(k in own for k in SUSPECT_HOOKS):
                return False
        return True

    def value_ok(value: object, budget: list[int]) -> bool:
        stack: list[Any] = [value]  # anything the candidate returned
        while stack:
            v = stack.pop()
            budget[0] -= 1
            if budget[0] < 0:
                return True  # too large to be a hack worth checking further
            cls = _type(v)
            if not class_ok(cls):
                return False
            if _isinstance(v, dict):
                stack.extend(v.keys())
                stack.extend(v.values())
            elif _isinstance(v, containers):
                stack.extend(v)
        return True

    def check_iter(it: Iterable[object]) -> Iterator[object]:
        for item in it:
            if not value_ok(item, [MAX_ELEMENTS]):
                raise UntrustedValue("generated value of untrusted type")
            yield item

    def guard(fn: Fn) -> Fn:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            if not value_ok(result, [MAX_ELEMENTS]):
                raise UntrustedValue(f"return value of type {_type(result).__name__} overrides comparison hooks")
            if _type(result).__flags__ & heap_flag == 0 and hasattr(result, "__next__") and not _isinstance(result, containers):
                return check_iter(result)  # a generator or iterator: check what it yields
            return result

        guarded.__name__ = getattr(fn, "__name__", "candidate")
        guarded.__doc__ = getattr(fn, "__doc__", None)
        return guarded

    return guard


def split_statements(source: str, filename: str) -> Items:
    """[(is_test, code)] for each top-level statement; a test is one containing an assert."""
    tree = ast.parse(source, filename)
    items = []
    for node in tree.body:
        is_test = any(isinstance(n, ast.Assert) for n in ast.walk(node))
        items.append((is_test, compile(ast.Module(body=[node], type_ignores=[]), filename, "exec")))
    return items


def check_body(test_source: str) -> Items | None:
    """[(is_test, code)] for the statements of ``def check(candidate)``, or None if absent."""
    tree = ast.parse(test_source, "test.py")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            items = []
            for stmt in node.body:
                is_test = any(isinstance(n, ast.Assert) for n in ast.walk(stmt))
                items.append((is_test, compile(ast.Module(body=[stmt], type_ignores=[]), "test.py", "exec")))
            return items
    return None


def run_item(code: types.CodeType, ns: Namespace, seconds: float) -> str | None:
    """Exec one statement with a per-test alarm; returns None on success or an error string."""
    def on_alarm(signum: int, frame: object) -> None:
        raise TestTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    # Re-fire every 0.1 s: a candidate that swallows the first TestTimeout gets another.
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.1)
    try:
        exec(code, ns)
        return None
    except TestTimeout:
        return "timeout"
    except BaseException as exc:  # noqa: BLE001 - SystemExit inside a test is a failure
        return short_error(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def short_error(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"[:200]
    except BaseException:  # noqa: BLE001 - hostile __str__
        return type(exc).__name__


def run_items(items: Items, ns: Namespace, seconds: float) -> tuple[list[bool], list[str | None]]:
    passed: list[bool] = []
    errors: list[str | None] = []
    for is_test, code in items:
        err = run_item(code, ns, seconds)
        if is_test:
            passed.append(err is None)
            errors.append(err)
    return passed, errors


def load_candidate(job: Mapping[str, Any]) -> tuple[Namespace, str | None]:
    """Exec the candidate as module ``solution``; returns (namespace, load error or None).

    A failing load does not stop the tests: functions defined before the failure still count.
    """
    with open("solution.py", encoding="utf-8", errors="replace") as f:
        source = job.get("prefix", "") + f.read()
    ns: Namespace = {"__name__": "solution", "__builtins__": builtins}
    try:
        code = compile(source, "solution.py", "exec")
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, or worse on hostile input
        return ns, short_error(exc)
    return ns, run_item(code, ns, job["per_test_timeout"])


def guarded_namespace(ns: Namespace, guard: Guard | None) -> Namespace:
    """A copy of the candidate namespace whose candidate-defined functions are guarded."""
    test_ns = dict(ns)
    if guard is None:
        return test_ns
    for name, value in ns.items():
        if isinstance(value, types.FunctionType) and value.__code__.co_filename == "solution.py":
            test_ns[name] = guard(value)
    return test_ns


def exited(load_error: str | None) -> bool:
    """The candidate tried to exit (sys.exit, exit(), KeyboardInterrupt) before its tests ran."""
    return load_error is not None and load_error.startswith(("SystemExit", "KeyboardInterrupt"))


def run_assert(job: Mapping[str, Any], guard: Guard | None) -> Report:
    ns, load_error = load_candidate(job)
    if exited(load_error):
        ns = {"__name__": "solution", "__builtins__": builtins}  # exiting early earns nothing
    try:
        setup = split_statements(job.get("setup", ""), "setup.py")
        tests = []
        for i, test in enumerate(job["tests"]):
            tests += split_statements(test, f"test_{i}.py")
    except SyntaxError as exc:
        return {"passed": [], "errors": [], "load_error": load_error, "test_error": short_error(exc)}
    # MBPP semantics: the program is candidate + setup + tests in one module, so the setup runs in
    # the candidate's globals (visible to both); the tests then see guarded candidate functions.
    run_items([(False, code) for _, code in setup], ns, job["per_test_timeout"])
    passed, errors = run_items(tests, guarded_namespace(ns, guard), job["per_test_timeout"])
    return {"passed": passed, "errors": errors, "load_error": load_error}


def run_humaneval(job: Mapping[str, Any], guard: Guard | None) -> Report:
    """HumanEval semantics: prompt + completion + test program + ``check(entry_point)`` are one module.

    The test program therefore runs in (a copy of) the candidate's globals, so ``check`` can call
    helpers the prompt defines beside the entry point (``poly`` in HumanEval/32) or the entry point
    by its own name. Both ``candidate`` and the entry point's own name are bound to the guarded
    entry point; the candidate's other functions are guarded as in the assert format.
    """
    ns, load_error = load_candidate(job)
    if exited(load_error):
        ns = {"__name__": "solution", "__builtins__": builtins}  # exiting early earns nothing
    entry = ns.get(job["entry_point"])
    try:
        body = check_body(job["tests"])
        module_items = [(False, c) for _, c in split_statements(job["tests"], "test.py")]
    except SyntaxError as exc:
        return {"passed": [], "errors": [], "load_error": load_error, "test_error": short_error(exc)}
    if entry is None:
        n = max(1, sum(t for t, _ in body or []))
        return {"passed": [False] * n, "errors": [f"entry point {job['entry_point']!r} not defined"] * n,
                "load_error": load_error}
    candidate = guard(entry) if (guard and isinstance(entry, types.FunctionType)) else entry
    test_ns = guarded_namespace(ns, guard)
    test_ns[job["entry_point"]] = candidate
    run_items(module_items, test_ns, job["per_test_timeout"])  # defines check, imports, METADATA
    test_ns["candidate"] = candidate
    if body is None or not any(is_test for is_test, _ in body):  # no asserts to split: check(candidate) is the test
        body = [(True, compile("check(candidate)", "test.py", "exec"))]
    passed, errors = run_items(body, test_ns, job["per_test_timeout"])
    return {"passed": passed, "errors": errors, "load_error": load_error}


def tokens_match(got: str, expected: str, tol: float) -> bool:
    a, b = got.split(), expected.split()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            return False
        if abs(fx - fy) > tol * max(1.0, abs(fy)):
            return False
    return True


def run_stdio_case(case: Mapping[str, str], seconds: float, max_bytes: int) -> tuple[str | None, str]:
    with open("case_input.txt", "wb") as f:
        f.write(case["input"].encode("utf-8", "replace"))
    with open("case_input.txt", "rb") as fin, open("case_output.txt", "wb") as fout:
        proc = subprocess.Popen([sys.executable, "-I", "-B", "solution.py"], stdin=fin, stdout=fout,
                                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        try:
            proc.wait(timeout=seconds)
            err = None if proc.returncode == 0 else f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            err = "timeout"
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # also strays the case left behind
        except OSError:
            pass
        proc.wait()
    with open("case_output.txt", "rb") as f:
        got = f.read(max_bytes).decode("utf-8", "replace")
    return err, got


def run_stdio(job: Mapping[str, Any]) -> Report:
    set_non_dumpable()
    passed: list[bool] = []
    errors: list[str | None] = []
    for case in job["tests"]:
        err, got = run_stdio_case(case, job["per_test_timeout"], job["max_output_bytes"])
        if err is None and not tokens_match(got, case["output"], job["float_tol"]):
            err = "wrong answer"
        passed.append(err is None)
        errors.append(err)
    return {"passed": passed, "errors": errors, "load_error": None}


def set_non_dumpable() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0: no ptrace, no /proc/pid/mem
    except Exception:  # noqa: BLE001 - best effort; the PID namespace still separates runs
        pass


def main(_write: Callable[[int, bytes], int] = os.write, _dumps: Callable[[object], str] = json.dumps,
         _exit: Callable[[int], object] = os._exit, _dup: Callable[[int], int] = os.dup,
         _dup2: Callable[[int, int], int] = os.dup2) -> None:
    nonce = sys.stdin.readline().strip()
    report_fd = _dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    _dup2(devnull, 0)
    _dup2(devnull, 1)  # the candidate's prints cannot reach the result channel by accident
    with open("job.json", encoding="utf-8") as f:
        job = json.load(f)
    fmt = job["format"]
    guard = make_guard(trusted_snapshot()) if job.get("check_return_types", True) else None
    if fmt == "stdio":
        report = run_stdio(job)
    elif fmt == "humaneval":
        report = run_humaneval(job, guard)
    else:
        report = run_assert(job, guard)
    report["errors"] = [e if i < 20 else None for i, e in enumerate(report["errors"])]  # bounded size
    line = nonce + " " + _dumps(report) + "\n"
    _write(report_fd, line.encode("utf-8", "replace"))
    _exit(0)


if __name__ == "__main__":
    main()
