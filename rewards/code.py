"""``code``: run the candidate program against its tests in a sandbox; score the share passed.

Reference formats (``metadata["test_format"]``; inferred from the reference's shape when absent):

* ``"assert"``: a list of assert statements (MBPP style); ``metadata["setup"]`` optional code run first.
* ``"humaneval"``: a test program defining ``check(candidate)``, with ``metadata["entry_point"]``.
* ``"stdio"``: a list of ``{"input": str, "output": str}`` cases run over stdin/stdout.

``metadata["code_prefix"]`` (optional) is prepended to the candidate (completion-style HumanEval,
where the prompt holds the signature). The completion may hold the code bare or in a fenced block
(the last ``python`` block wins, else the last block); text before ``</think>`` is ignored.

The candidate never runs in this process: ``rewards.harness`` runs it inside ``rewards.sandbox``
and reports per-test results on a nonce-tagged line (see the harness docstring for why exiting
early, killing the harness or forging output scores 0).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewards.base import OnError, Reward, RewardError, RewardInput, RewardOutput, split_think
from rewards.sandbox import Limits, Sandbox, SandboxResult, iter_lines

FORMATS = ("assert", "humaneval", "stdio")
HARNESS_SOURCE = Path(__file__).with_name("harness.py").read_text()
_FENCE_RE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
MAX_TESTS = 1000


def extract_code(completion: str) -> str:
    """The program in a completion: the last ```python block, else the last block, else the text."""
    _, final = split_think(completion)
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE_RE.finditer(final)]
    python_blocks = [code for lang, code in blocks if lang in ("python", "py", "python3")]
    if python_blocks:
        return python_blocks[-1]
    if blocks:
        return blocks[-1][1]
    return final


def infer_format(reference: Any, metadata: dict[str, Any]) -> str:
    """The test format named in metadata, or guessed from the reference's shape."""
    fmt = metadata.get("test_format")
    if fmt is not None:
        if fmt not in FORMATS:
            raise RewardError(f"metadata['test_format'] must be one of {FORMATS}, got {fmt!r}")
        return str(fmt)
    if isinstance(reference, str):
        return "humaneval" if "def check" in reference else "assert"
    if isinstance(reference, (list, tuple)) and reference and all(isinstance(c, dict) for c in reference):
        return "stdio"
    return "assert"


def validate_tests(fmt: str, reference: Any, metadata: dict[str, Any]) -> Any:
    """Check the reference's type for its format; returns the JSON-ready tests."""
    if fmt == "humaneval":
        if not isinstance(reference, str) or not isinstance(metadata.get("entry_point"), str):
            raise RewardError("humaneval tests need a str test program and metadata['entry_point']")
        return reference
    if isinstance(reference, str) and fmt == "assert":
        reference = [reference]
    if not isinstance(reference, (list, tuple)) or not reference:
        raise RewardError(f"{fmt} tests must be a non-empty list, got {type(reference).__name__}")
    if len(reference) > MAX_TESTS:
        raise RewardError(f"{len(reference)} tests exceed the limit of {MAX_TESTS}")
    if fmt == "assert" and not all(isinstance(t, str) for t in reference):
        raise RewardError("assert tests must be a list of str")
    if fmt == "stdio":
        ok = all(isinstance(c, dict) and isinstance(c.get("input"), str) and isinstance(c.get("output"), str)
                 for c in reference)
        if not ok:
            raise RewardError('stdio tests must be a list of {"input": str, "output": str}')
        return [{"input": c["input"], "output": c["output"]} for c in reference]
    return list(reference)


def parse_report(result: SandboxResult, nonce: str) -> dict[str, Any] | None:
    """The harness's report, or None when it is missing, duplicated, malformed or the exit was bad."""
    if result.returncode != 0 or result.timed_out:
        return None
    lines = [line for line in iter_lines(result.stdout) if line.startswith(nonce + " ")]
    if len(lines) != 1:
        return None
    try:
        report = json.loads(lines[0][len(nonce) + 1 :])
    except ValueError:
        return None
    if not isinstance(report, dict):
        return None
    passed = report.get("passed")
    if not isinstance(passed, list) or not all(isinstance(p, bool) for p in passed):
        return None
    return report


class CodeReward(Reward):
    """Sandboxed execution of generated code against tests.

    Args:
        scoring: "fraction" (share of tests passed) or "all_or_nothing".
        timeout_s: Wall-clock limit of the whole program run (all tests).
        per_test_timeout_s: Limit of one test (one stdio case), enforced inside the sandbox.
        memory_mb, max_processes, max_file_mb, max_open_files, max_output_bytes, tmpfs_mb: See
            ``rewards.sandbox.Limits``.
        use_bwrap: "auto", True (require bubblewrap) or False (test the fallback).
        python: Interpreter of sandboxed programs (default: see ``rewards.sandbox.choose_python``).
        check_return_types: Reject return values whose classes override comparison hooks.
        float_tol: Relative tolerance of numeric tokens in stdio comparisons.
        max_code_bytes: Longer programs score 0 without running.
        max_parallel: Sandboxes run at once by ``score_batch``.
        on_error: Failure policy.
    """

    name = "code"

    def __init__(
        self,
        *,
        scoring: str = "fraction",
        timeout_s: float = 10.0,
        per_test_timeout_s: float = 3.0,
        memory_mb: int = 1024,
        max_processes: int = 32,
        max_file_mb: int = 16,
        max_open_files: int = 64,
        max_output_bytes: int = 256 * 1024,
        tmpfs_mb: int = 64,
        use_bwrap: bool | str = "auto",
        python: str | None = None,
        check_return_types: bool = True,
        float_tol: float = 1e-6,
        max_code_bytes: int = 200_000,
        max_parallel: int | None = None,
        on_error: OnError = "zero",
    ) -> None:
        super().__init__(on_error=on_error)
        if scoring not in ("fraction", "all_or_nothing"):
            raise RewardError(f"code scoring must be 'fraction' or 'all_or_nothing', got {scoring!r}")
        self.scoring = scoring
        limits = Limits(
            wall_s=timeout_s, cpu_s=max(1, int(timeout_s) + 1), memory_mb=memory_mb, max_processes=max_processes,
            max_file_mb=max_file_mb, max_open_files=max_open_files, max_output_bytes=max_output_bytes,
            tmpfs_mb=tmpfs_mb,
        )
        self.sandbox = Sandbox(limits, use_bwrap=use_bwrap, python=python)
        self.per_test_timeout_s = per_test_timeout_s
        self.check_return_types = check_return_types
        self.float_tol = float_tol
        self.max_code_bytes = max_code_bytes
        self.max_parallel = max_parallel or os.cpu_count() or 1

    def warmup(self) -> None:
        self.sandbox.isolation  # noqa: B018 - probes (and warns about) isolation once

    def score_batch(self, inps: Sequence[RewardInput]) -> list[RewardOutput]:
        """Runs up to ``max_parallel`` sandboxes at once (each on its own uid); keeps order."""
        if len(inps) <= 1 or self.max_parallel <= 1:
            return super().score_batch(inps)
        with concurrent.futures.ThreadPoolExecutor(self.max_parallel, thread_name_prefix="code-reward") as ex:
            return list(ex.map(self.score, inps))

    def _score(self, inp: RewardInput) -> RewardOutput:
        fmt = infer_format(inp.reference, inp.metadata)
        tests = validate_tests(fmt, inp.reference, inp.metadata)
        code = extract_code(inp.completion)
        if not code.strip():
            return RewardOutput(score=0.0, error="no code in completion", details={"format": fmt})
        if len(code.encode("utf-8", "replace")) > self.max_code_bytes:
            return RewardOutput(score=0.0, error=f"code longer than {self.max_code_bytes} bytes", details={"format": fmt})
        nonce = secrets.token_hex(16)
        files = {"harness.py": HARNESS_SOURCE, "job.json": json.dumps(self._job(fmt, tests, inp.metadata)), "solution.py": code}
        result = self.sandbox.run_python(files, ["harness.py"], stdin=(nonce + "\n").encode())
        return self._verdict(fmt, result, parse_report(result, nonce))

    def _job(self, fmt: str, tests: Any, metadata: dict[str, Any]) -> dict[str, Any]:
        return {
            "format": fmt,
            "tests": tests,
            "entry_point": metadata.get("entry_point"),
            "setup": metadata.get("setup") or "",
            "prefix": metadata.get("code_prefix") or "",
            "per_test_timeout": self.per_test_timeout_s,
            "check_return_types": self.check_return_types,
            "float_tol": self.float_tol,
            "max_output_bytes": self.sandbox.limits.max_output_bytes,
        }

    def _verdict(self, fmt: str, result: SandboxResult, report: dict[str, Any] | None) -> RewardOutput:
        details: dict[str, Any] = {
            "format": fmt, "isolation": result.isolation, "duration_s": round(result.duration_s, 4),
            "stderr_tail": result.stderr[-300:].decode("utf-8", "replace"),
        }
        if result.timed_out:
            return RewardOutput(score=0.0, timed_out=True, error=f"program timed out after {self.sandbox.limits.wall_s}s",
                                details=details)
        if report is None:
            return RewardOutput(score=0.0, error=f"no valid test report (exit status {result.returncode}): the program "
                                                 f"exited early, crashed, or tampered with the harness", details=details)
        passed = report["passed"]
        n_pass, n = sum(passed), len(passed)
        details.update(passed=n_pass, total=n, load_error=report.get("load_error"), test_errors=report.get("errors", [])[:5])
        if n == 0:
            return RewardOutput(score=0.0, error=report.get("test_error") or "no tests found", details=details)
        all_pass = n_pass == n
        score = float(all_pass) if self.scoring == "all_or_nothing" else n_pass / n
        return RewardOutput(score=score, correct=all_pass, details=details)
