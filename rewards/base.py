"""Records and the base class shared by every reward.

A reward turns one ``RewardInput`` (prompt, completion, reference, metadata) into one
``RewardOutput`` (score, correct, timed_out, error, details). Model output is untrusted, so the
contract of ``Reward.score`` is that it never raises on what the model wrote: parse failures,
timeouts and crashes of the verifier become a scored failure with ``error`` set, and are counted by
the pool. Only configuration mistakes (an unknown reward name, a bad option) raise, and they do so
when the reward is built, before any sample is scored.

This module imports nothing heavy: the verifiers import sympy, math-verify or transformers lazily.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("rewards")

# What a failing sample scores: "zero" (score 0.0, error recorded), a number (that score, error
# recorded) or "raise" (re-raise; for debugging a reward in a notebook, never in a training run).
OnError = str | float

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class RewardInput:
    """One sample to score.

    Attributes:
        prompt: The prompt the model answered (the question, or the full templated prompt).
        completion: The model's completion. Built-in rewards see it cleaned: always a ``str``
            without NUL bytes and with invalid UTF-8 replaced by U+FFFD (see ``clean_input``).
        reference: The gold answer: a string (or number, or list of acceptable answers) for
            ``math``; the tests for ``code`` (see ``rewards.code``); anything for user rewards.
        metadata: Free-form per-sample data, e.g. ``test_format``/``entry_point`` for code,
            ``thinking`` ("on"/"off") or ``system`` (the system prompt) for ``format``.
    """

    prompt: str
    completion: str
    reference: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RewardOutput:
    """The verdict on one sample.

    Attributes:
        score: The scalar reward (finite float).
        correct: Whether the verifier accepted the answer; feeds ``pass_rate``.
        timed_out: The sample hit its deadline (it then scores the failure value).
        error: Why scoring failed (parse error, crash of a user reward, sandbox failure), or None.
        details: Per-component scores and diagnostics, e.g. ``{"math": 1.0, "format": 0.0}``.
    """

    score: float
    correct: bool = False
    timed_out: bool = False
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class RewardError(RuntimeError):
    """Raised only for configuration errors, or when ``on_error="raise"`` asks for it."""


def clean_text(value: Any) -> str:
    """Return ``value`` as a str that is safe to regex, pickle, encode and pass to a subprocess.

    Bytes are decoded as UTF-8 with replacement, NUL bytes are dropped and lone surrogates (what
    ``surrogateescape`` decoding of invalid UTF-8 leaves behind) become U+FFFD. None becomes "".
    """
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    else:
        text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text.replace("\x00", "") if "\x00" in text else text


def split_think(text: str) -> tuple[str, str]:
    """Split a completion into (reasoning, final part) at the last ``</think>``.

    An opened but unclosed ``<think>`` (a truncated completion) is all reasoning.
    """
    end = text.rfind("</think>")
    if end >= 0:
        start = text.find("<think>")
        reasoning = text[start + len("<think>") : end] if 0 <= start < end else text[:end]
        return reasoning, text[end + len("</think>") :]
    start = text.find("<think>")
    if start >= 0:
        return text[start + len("<think>") :], ""
    return "", text


def clean_input(inp: Any) -> RewardInput:
    """Normalise a possibly malformed input into a well-typed ``RewardInput``.

    Accepts a ``RewardInput`` or a mapping with the same keys (what external harnesses may send).
    """
    prompt: Any
    completion: Any
    metadata: Any
    if isinstance(inp, RewardInput):
        prompt, completion, reference, metadata = inp.prompt, inp.completion, inp.reference, inp.metadata
    elif isinstance(inp, dict):
        prompt, completion = inp.get("prompt"), inp.get("completion")
        reference, metadata = inp.get("reference"), inp.get("metadata")
    else:
        raise TypeError(f"expected RewardInput, got {type(inp).__name__}")
    return RewardInput(
        prompt=clean_text(prompt),
        completion=clean_text(completion),
        reference=reference,
        metadata=metadata if isinstance(metadata, dict) else {},
    )


def describe_error(exc: BaseException) -> str:
    """A short, printable description of an exception (never raises, even on hostile ``__str__``)."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - a user exception may have a broken __str__
        text = type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def failure_score(on_error: OnError) -> float:
    """The score a failed sample receives under the ``on_error`` policy."""
    if on_error in ("zero", "raise"):
        return 0.0
    return float(on_error)


def validate_on_error(on_error: OnError) -> OnError:
    """Check an ``on_error`` policy at build time; returns it unchanged."""
    if on_error in ("zero", "raise"):
        return on_error
    try:
        value = float(on_error)
    except (TypeError, ValueError):
        raise RewardError(f"on_error must be 'zero', 'raise' or a number, got {on_error!r}") from None
    if not math.isfinite(value):
        raise RewardError(f"on_error must be finite, got {on_error!r}")
    return value


class Reward:
    """Base class of every reward: a pure ``_score`` core wrapped so that it never raises.

    Subclasses implement ``_score(inp) -> RewardOutput`` on a cleaned input; they may raise, and the
    wrapper turns the exception into a failure scored by ``on_error``. ``score_batch`` keeps order.

    Args:
        on_error: Policy for a sample whose scoring raised: "zero", a number, or "raise".
    """

    name: str = "reward"

    def __init__(self, *, on_error: OnError = "zero") -> None:
        self.on_error = validate_on_error(on_error)

    def _score(self, inp: RewardInput) -> RewardOutput:
        raise NotImplementedError

    def warmup(self) -> None:
        """Import heavy dependencies now (pool workers call it before reporting ready)."""

    def score(self, inp: RewardInput) -> RewardOutput:
        """Score one sample. Never raises on model output (unless ``on_error="raise"``)."""
        try:
            cleaned = clean_input(inp)
        except Exception as exc:  # noqa: BLE001 - malformed input is scored, not raised
            return self.failure(exc)
        try:
            return self._score(cleaned)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - see module docstring
            return self.failure(exc)

    def score_batch(self, inps: Sequence[RewardInput]) -> list[RewardOutput]:
        """Score samples in order; the default scores them one by one."""
        return [self.score(inp) for inp in inps]

    def failure(self, exc: BaseException, *, timed_out: bool = False) -> RewardOutput:
        """The output for a sample whose scoring raised ``exc`` (or re-raise under "raise")."""
        if self.on_error == "raise":
            raise exc
        logger.debug("reward %s failed: %s", self.name, describe_error(exc))
        return RewardOutput(
            score=failure_score(self.on_error), correct=False, timed_out=timed_out, error=describe_error(exc)
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
