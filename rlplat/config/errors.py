"""The one error type users see for bad configuration or data, before any work starts."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A configuration or input problem the user can fix.

    The launcher prints ``str(err)`` as one paragraph and exits with code 2, before Ray starts.

    Args:
        field: Dotted config path of the offending field (for example ``grpo.global_batch``).
        problem: What is wrong, with the value found.
        fix: What to do about it, phrased as an instruction.
    """

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"Invalid configuration at '{field}': {problem} Fix: {fix}")


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return a ``did you mean 'x'?`` hint for a misspelt key, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
