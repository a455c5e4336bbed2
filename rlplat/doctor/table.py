"""The doctor's results as a table for people and as JSON for programs (pure)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from rlplat.doctor.runner import Result, exit_code

# Width of the detail column before it wraps onto indented lines.
_DETAIL_WIDTH = 80


def summary_line(results: Sequence[Result], seconds: float) -> str:
    """``rlplat doctor: N checks: P passed, S skipped, F failed in T s``."""
    counts = {s: sum(r.status == s for r in results) for s in ("PASS", "SKIP", "FAIL")}
    verdict = "all clear" if exit_code(results) == 0 else "PROBLEMS FOUND"
    return (f"rlplat doctor: {verdict}. {len(results)} checks: {counts['PASS']} passed, {counts['SKIP']} "
            f"skipped, {counts['FAIL']} failed in {seconds:.0f} s.")


def format_table(results: Sequence[Result]) -> str:
    """One row per result: check, result, seconds, detail; a FAIL's fix on the lines below its
    detail (``fix: ...``). Long details wrap within their column."""
    name_w = max([len("CHECK"), *(len(r.name) for r in results)])
    head = f"{'CHECK'.ljust(name_w)}  RESULT  SECONDS  DETAIL"
    indent = " " * (name_w + 19)
    lines = [head, "-" * (len(head) + _DETAIL_WIDTH - len("DETAIL"))]
    for r in results:
        text = r.detail + (f"\nfix: {r.fix}" if r.status == "FAIL" and r.fix else "")
        wrapped = [w for para in text.split("\n") for w in textwrap.wrap(para, _DETAIL_WIDTH) or [""]]
        lines.append(f"{r.name.ljust(name_w)}  {r.status:<6}  {r.seconds:7.1f}  {wrapped[0]}")
        lines += [indent + w for w in wrapped[1:]]
    return "\n".join(lines)


def results_json(results: Sequence[Result], seconds: float, context: Mapping[str, Any]) -> dict[str, Any]:
    """What ``--json PATH`` writes: ``ok`` (the exit code is 0), ``exit_code``, ``seconds``, the
    run's ``context`` (device, flags) and ``checks`` (one object per result, in order)."""
    code = exit_code(results)
    return {"ok": code == 0, "exit_code": code, "seconds": round(seconds, 1), **context,
            "checks": [{**asdict(r), "seconds": round(r.seconds, 3)} for r in results]}
