"""``format``: the reasoning-toggle format check of Llama-Nemotron.

With "detailed thinking on" a completion must contain exactly one well-formed ``<think>...</think>``
block, opening the completion, followed by a non-empty answer. With "detailed thinking off" it must
contain no think tags at all (and be non-empty). The mode comes, in order, from
``metadata["thinking"]`` ("on"/"off" or a bool), from ``metadata["system"]`` (the system prompt),
or from the prompt text itself: its *first* "detailed thinking on/off", because chat templates
render the system prompt before any user text that might quote the phrase. Unknown mode: ``default_mode``.
"""

from __future__ import annotations

import re
from typing import Any

from rewards.base import OnError, Reward, RewardError, RewardInput, RewardOutput

_TOGGLE_RE = re.compile(r"detailed thinking (on|off)", re.IGNORECASE)
_TAG_RE = re.compile(r"</?think>")
MODES = ("on", "off", "any")


def thinking_mode(inp: RewardInput) -> str | None:
    """The requested reasoning mode of a sample, "on"/"off", or None if nothing says."""
    flag: Any = inp.metadata.get("thinking")
    if isinstance(flag, bool):
        return "on" if flag else "off"
    if isinstance(flag, str) and flag.lower() in ("on", "off"):
        return flag.lower()
    for text in (inp.metadata.get("system"), inp.prompt):
        if isinstance(text, str):
            found: list[str] = _TOGGLE_RE.findall(text)
            if found:
                return found[0].lower()
    return None


def check_thinking_on(completion: str) -> tuple[bool, str]:
    """Exactly one ``<think>`` (at the start) and one ``</think>`` after it, then an answer."""
    tags = _TAG_RE.findall(completion)
    if tags != ["<think>", "</think>"]:
        return False, f"expected one <think>...</think> block, found tags {tags[:6]}"
    if not completion.lstrip().startswith("<think>"):
        return False, "text before <think>"
    answer = completion.split("</think>", 1)[1]
    if not answer.strip():
        return False, "no answer after </think>"
    return True, "ok"


def check_thinking_off(completion: str) -> tuple[bool, str]:
    """No think tags at all, and a non-empty answer."""
    if _TAG_RE.search(completion):
        return False, "think tags present with detailed thinking off"
    if not completion.strip():
        return False, "empty completion"
    return True, "ok"


class FormatReward(Reward):
    """1.0 when the completion's format matches the requested reasoning mode, else 0.0.

    Args:
        default_mode: Mode when the sample does not say: "on", "off", or "any" (either format).
        on_error: Failure policy.
    """

    name = "format"

    def __init__(self, *, default_mode: str = "any", on_error: OnError = "zero") -> None:
        super().__init__(on_error=on_error)
        if default_mode not in MODES:
            raise RewardError(f"format default_mode must be one of {MODES}, got {default_mode!r}")
        self.default_mode = default_mode

    def _score(self, inp: RewardInput) -> RewardOutput:
        mode = thinking_mode(inp) or self.default_mode
        if mode == "on":
            ok, why = check_thinking_on(inp.completion)
        elif mode == "off":
            ok, why = check_thinking_off(inp.completion)
        else:
            ok_on, why_on = check_thinking_on(inp.completion)
            ok_off, why_off = check_thinking_off(inp.completion)
            ok, why = ok_on or ok_off, why_on if "<think>" in inp.completion else why_off
        return RewardOutput(score=float(ok), correct=ok, details={"mode": mode, "reason": why})
