"""Answer extraction from LaTeX text: ``last_boxed``. Pure string code (``re`` only), cheap to import.

The ``math`` reward reads completions with it; it is public (``rewards.last_boxed``) so that
reference solutions (``answer_format="boxed"`` datasets) are read by the same function.
"""

from __future__ import annotations

import re

__all__ = ["braced_argument", "last_boxed"]

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\b")
_BARE_TOKEN_RE = re.compile(r"[^\s$]+")
# What matters inside a group: an escape (backslash + any character, never a brace) or a brace.
_GROUP_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)
MAX_BOXES = 20  # boxes tried from the end before giving up (bounds the work on hostile input)


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``, stripped.

    * Nested braces are balanced: ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``.
    * Escaped braces do not count: ``\\boxed{\\{1, 2\\}}`` gives ``\\{1, 2\\}``, and
      ``\\boxed{\\left\\{ x \\right.}`` gives ``\\left\\{ x \\right.``.
    * Without braces the argument is the next token: ``\\boxed 5`` gives ``5``.
    * A last box that is unbalanced (a truncated completion) or empty is skipped, and the box
      before it is used; None when no complete, non-empty box exists.

    Linear in ``len(text)`` per box tried; at most the last ``MAX_BOXES`` boxes are tried.
    """
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    for pos in reversed(starts[-MAX_BOXES:]):
        content = braced_argument(text, pos)
        if content is not None and content.strip():
            return content.strip()
    return None


def braced_argument(text: str, pos: int) -> str | None:
    """The TeX argument starting at ``pos``: a balanced ``{...}`` group (its content, without the
    outer braces; ``\\{``, ``\\}`` and ``\\\\`` are escapes, not braces), else the next
    non-space token. Spaces before it are skipped; None when the group is unbalanced or nothing follows.
    """
    n = len(text)
    while pos < n and text[pos] == " ":
        pos += 1
    if pos >= n:
        return None
    if text[pos] != "{":
        bare = _BARE_TOKEN_RE.match(text, pos)
        return bare.group(0) if bare else None
    depth = 0
    for match in _GROUP_TOKEN_RE.finditer(text, pos):
        token = match.group()
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : match.start()]
    return None
