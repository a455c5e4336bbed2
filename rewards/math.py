"""``math``: extract the final answer of a completion and check it against the reference.

Extraction (pure string code, linear time, safe on megabyte inputs) tries, in the configured order:
the last ``\\boxed{...}`` / ``\\fbox{...}``; else the last explicit "answer is ..." / "Answer: ..." /
``#### ...``; else the last number. Text inside ``<think>...</think>`` is ignored when the part after
``</think>`` yields an answer; with ``think_fallback`` (default) the reasoning is searched when it
does not (a truncated completion, say). Equivalence is decided by math-verify (sympy underneath):
fractions, decimals, LaTeX, units in ``\\text``, intervals, sets, tuples, matrices and symbolic
expressions. Departures from plain math-verify, each for a failure seen in practice:

* a percent sign on either side also accepts the value divided by 100 ("50%" == "0.5");
* "5 dollars" / "12 apples" compare as the number (math-verify would read a product of symbols);
* answers that would make sympy evaluate huge numbers (power towers like ``10^10^10^10``, huge
  exponents or factorials) are compared as normalised strings instead: such evaluation runs in C,
  where neither math-verify's SIGALRM timeout nor any signal can interrupt it.

math-verify and sympy are imported on first use, not when ``rewards`` is imported.
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import time
import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

from rewards.base import OnError, Reward, RewardError, RewardInput, RewardOutput, split_think
from rewards.extract import last_boxed
from rewards.function import is_main_thread

STRATEGIES = ("boxed", "answer_is", "last_number")

_ANSWER_RE = re.compile(
    r"(?:####\s*|(?:final\s+answer|answer)(?:\s+is|\s*[:=]|\s+is\s*[:=])\s*)(?P<ans>[^\n]*)", re.IGNORECASE
)
_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?\s*(?:\\?%)?")
_UNIT_RE = re.compile(r"([-+]?\d[\d,]*(?:\.\d+)?)\s+[A-Za-z]{2,}(?:[\s.]+[A-Za-z]{2,})*\.?")
# Power towers (a^b^c, a^{b^{c}}, a**b**c), exponents of 7+ digits, factorials of 5+ digits.
_EXPLOSIVE_RE = re.compile(
    r"(?:\^|\*\*)\s*[{(]?\s*[\d.]+\s*[)}]?\s*(?:\^|\*\*)"
    r"|(?:\^|\*\*)\s*[{(]?\s*\d{7,}"
    r"|\d{5,}\s*!"
)
_UNICODE_MATH = str.maketrans({
    "\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u00f7": "\\div ", "\u00b7": "\\cdot ",
    "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ", "\u221a": "\\sqrt",
    "\u00b2": "^2", "\u00b3": "^3", "\u00b9": "^1",
})
_AFTER_NFKC = str.maketrans({"\u2044": "/"})  # NFKC turns "½" into "1⁄2" (fraction slash)
MAX_BRACE_DEPTH = 50


def answer_phrase(text: str) -> str | None:
    """The answer of the last "answer is X" / "Answer: X" / "#### X" statement, trimmed."""
    last = None
    for match in _ANSWER_RE.finditer(text):
        last = match
    if last is None:
        return None
    ans = re.split(r"\.\s|\.$", last.group("ans").strip(), maxsplit=1)[0]
    ans = ans.strip().strip("*").strip()
    ans = re.sub(r"^\$+|\$+$|^\\\(|\\\)$|^\\\[|\\\]$", "", ans).strip()
    return ans or None


def last_number(text: str) -> str | None:
    """The last number written in ``text`` (with its sign, thousands commas, fraction or percent)."""
    last = None
    for match in _NUMBER_RE.finditer(text):
        last = match
    return last.group(0).strip() if last else None


_EXTRACTORS = {"boxed": last_boxed, "answer_is": answer_phrase, "last_number": last_number}


def extract_answer(
    completion: str, strategies: Sequence[str] = STRATEGIES, think_fallback: bool = True
) -> tuple[str | None, str]:
    """Find the final answer of a completion.

    Returns:
        ``(answer, how)``: the answer string (None if nothing was found) and which strategy found
        it, prefixed with ``think:`` when it came from inside the reasoning block.
    """
    reasoning, final = split_think(unicode_math(completion))
    parts = [("", final)] + ([("think:", reasoning)] if think_fallback and reasoning else [])
    for prefix, part in parts:
        for name in strategies:
            ans = _EXTRACTORS[name](part)
            if ans:
                return ans, prefix + name
    return None, "none"


def unicode_math(text: str) -> str:
    """Map Unicode math (minus sign, ×, π, superscripts, ½, full-width digits) to ASCII/LaTeX."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", text.translate(_UNICODE_MATH)).translate(_AFTER_NFKC)


def normalize_answer(ans: str) -> tuple[str, bool]:
    """Normalise Unicode math and units; returns ``(latex, had_percent)``."""
    ans = unicode_math(ans).strip()
    ans = re.sub(r"^\$+|\$+$", "", ans.rstrip(".").strip()).strip().rstrip(".").strip()
    unit = _UNIT_RE.fullmatch(ans)
    if unit:
        ans = unit.group(1)
    had_percent = "%" in ans
    ans = re.sub(r"(?<!\\)%", r"\\%", ans)
    return ans, had_percent


def is_explosive(ans: str, max_chars: int) -> bool:
    """Whether sympy could spend unbounded, uninterruptible time or memory on ``ans``."""
    if len(ans) > max_chars or _EXPLOSIVE_RE.search(ans):
        return True
    depth = peak = 0
    for ch in ans:
        depth += ch in "{(["
        depth -= ch in "})]"
        peak = max(peak, depth)
    return peak > MAX_BRACE_DEPTH


def canonical_string(ans: str) -> str:
    """Whitespace- and brace-insensitive form used when sympy must not be trusted with ``ans``."""
    return re.sub(r"[\s{}]|\\left|\\right", "", ans).replace("**", "^")


def reference_answers(reference: Any) -> list[str]:
    """The acceptable gold answers (a list reference means: any of these)."""
    if reference is None:
        raise RewardError("math reward needs a reference answer, got None")
    items = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    golds = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise RewardError(f"math reference must be str/int/float or a list of them, got {type(item).__name__}")
        golds.append(item if isinstance(item, str) else repr(item))
    if not golds:
        raise RewardError("math reference is an empty list")
    return golds


class MathReward(Reward):
    """Final-answer equivalence with math-verify.

    Args:
        strategies: Extraction strategies, tried in order (subset of "boxed", "answer_is", "last_number").
        think_fallback: Look inside ``<think>`` when the final part yields no answer.
        timeout_s: math-verify's own per-call timeout (SIGALRM, so only in a main thread; the pool's
            kill-based timeout is the real bound).
        float_rounding, numeric_precision, strict: Passed to ``math_verify.verify``.
        max_answer_chars: Longer extracted answers are compared as strings, not parsed.
        on_error: Failure policy.
    """

    name = "math"

    def __init__(
        self,
        *,
        strategies: Sequence[str] = STRATEGIES,
        think_fallback: bool = True,
        timeout_s: int = 3,
        float_rounding: int = 6,
        numeric_precision: int = 15,
        strict: bool = True,
        max_answer_chars: int = 1000,
        on_error: OnError = "zero",
    ) -> None:
        super().__init__(on_error=on_error)
        unknown = [s for s in strategies if s not in _EXTRACTORS]
        if unknown or not strategies:
            raise RewardError(f"unknown math extraction strategies {unknown}; choose from {STRATEGIES}")
        self.strategies = tuple(strategies)
        self.think_fallback = think_fallback
        self.timeout_s = max(1, int(timeout_s))
        self.verify_kwargs = {"float_rounding": float_rounding, "numeric_precision": numeric_precision, "strict": strict}
        self.max_answer_chars = max_answer_chars

    def warmup(self) -> None:
        # First use of each kind of expression pays sympy's lazy imports (up to ~1 s on a busy
        # CPU); paying them here keeps the first samples of a fresh pool worker within timeout.
        for gold, pred in (("1", "1"), ("\\frac{1}{2}", "0.5"), ("[1, 2)", "[1,2)"), ("\\{1, 2\\}", "\\{2,1\\}"),
                           ("x^2+x", "x(x+1)"), ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "(1, 2)"), ("x=1", "1")):
            self._equivalent(gold, pred)
        _parse.cache_clear()

    def _score(self, inp: RewardInput) -> RewardOutput:
        golds = reference_answers(inp.reference)
        ans, how = extract_answer(inp.completion, self.strategies, self.think_fallback)
        details = {"extracted": None if ans is None else ans[:200], "method": how}
        if ans is None:
            return RewardOutput(score=0.0, correct=False, details=details)
        ok = any(self._equivalent(gold, ans) for gold in golds)
        return RewardOutput(score=1.0 if ok else 0.0, correct=ok, details=details)

    def _equivalent(self, gold: str, pred: str) -> bool:
        if len(gold) > self.max_answer_chars or len(pred) > self.max_answer_chars:
            return gold.strip() == pred.strip()  # too long to normalise or parse safely
        gold_n, gold_pct = normalize_answer(gold)
        pred_n, pred_pct = normalize_answer(pred)
        if is_explosive(gold_n, self.max_answer_chars) or is_explosive(pred_n, self.max_answer_chars):
            return canonical_string(gold_n) == canonical_string(pred_n)
        if not is_main_thread():
            return self._equivalent_normalized(gold_n, gold_pct, pred_n, pred_pct, None)
        with _preserve_alarm():
            return self._equivalent_normalized(gold_n, gold_pct, pred_n, pred_pct, self.timeout_s)

    def _equivalent_normalized(self, gold: str, gold_pct: bool, pred: str, pred_pct: bool, timeout: int | None) -> bool:
        if _verify(gold, pred, timeout, **self.verify_kwargs):
            return True
        if gold_pct or pred_pct:  # "50%" vs "0.5": also try the percentage as a fraction
            gold_f = _as_fraction_of_100(gold) if gold_pct else gold
            pred_f = _as_fraction_of_100(pred) if pred_pct else pred
            return _verify(gold_f, pred_f, timeout, **self.verify_kwargs)
        return False


@contextlib.contextmanager
def _preserve_alarm() -> Iterator[None]:
    """Re-arm the caller's ITIMER_REAL after math-verify's ``signal.alarm`` calls cancel it.

    math-verify restores its SIGALRM handler but not a timer set by someone else (pytest-timeout,
    a user's own alarm); without this, scoring in a main thread would silently disarm theirs.
    """
    remaining, interval = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    try:
        yield
    finally:
        if remaining > 0:
            signal.setitimer(signal.ITIMER_REAL, max(remaining - (time.monotonic() - start), 1e-3), interval)


def _as_fraction_of_100(ans: str) -> str:
    return "\\frac{" + ans.replace("\\%", "") + "}{100}"


def _verify(gold: str, pred: str, timeout: int | None, **kwargs: Any) -> bool:
    from math_verify import verify  # lazy: sympy takes about a second to import

    gold_parsed = _parse(gold, timeout)
    pred_parsed = _parse(pred, timeout)
    if not gold_parsed or not pred_parsed:
        return canonical_string(gold) == canonical_string(pred)
    return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=timeout, **kwargs))


@functools.lru_cache(maxsize=4096)
def _parse(ans: str, timeout: int | None) -> tuple[Any, ...]:
    """math-verify parse of a bare answer: as inline LaTeX first, as free text if that fails.

    Cached because a GRPO group scores many completions against the same reference.
    """
    from math_verify import parse

    parsed = parse(f"${ans}$", parsing_timeout=timeout)
    if not any(not isinstance(p, str) for p in parsed):
        raw = parse(ans, parsing_timeout=timeout)
        parsed = raw or parsed
    return tuple(parsed)
