"""Errors a user can fix, phrased as one paragraph: what is wrong, where, and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FieldError(ValueError):
    """A value does not fit its declared field.

    Args:
        field: Dotted path of the offending field (for example ``curriculum.options.sigma``).
        problem: What is wrong, with the value found.
        fix: What to do about it, phrased as an instruction.
    """

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"Invalid configuration at '{field}': {problem} Fix: {fix}")


class PluginError(ValueError):
    """A component name or import path does not resolve, or its options do not fit."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A `` Did you mean 'x'?`` hint for a misspelt key, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
