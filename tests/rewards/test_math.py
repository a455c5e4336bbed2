"""The ``math`` verifier: extraction, equivalence classes, the think block, hostile inputs."""

from __future__ import annotations

import time

import pytest

from rewards import RewardInput, get_reward
from rewards.math import extract_answer, is_explosive, normalize_answer

MATH = get_reward("math")


def check(completion: str, reference: object, **options: object) -> bool:
    reward = get_reward("math", **options) if options else MATH
    out = reward.score(RewardInput(prompt="q", completion=completion, reference=reference))
    assert out.error is None, out.error
    return out.correct


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("so \\boxed{7} and later \\boxed{\\frac{1}{2}}.", ("\\frac{1}{2}", "boxed")),
        ("nested \\boxed{\\{1, \\{2\\}\\}} done", ("\\{1, \\{2\\}\\}", "boxed")),
        ("\\boxed 5 is it", ("5", "boxed")),
        ("ok \\boxed{3} then truncated \\boxed{4", ("3", "boxed")),
        ("\\fbox{9}", ("9", "boxed")),
        ("We get 3 and 4. The answer is 12.", ("12", "answer_is")),
        ("Final Answer: $\\frac{3}{4}$", ("\\frac{3}{4}", "answer_is")),
        ("step 1\n#### 1,234", ("1,234", "answer_is")),
        ("there are 3 cats and 14 dogs", ("14", "last_number")),
        ("temperature -2.5 degrees", ("-2.5", "last_number")),
        ("no digits here", (None, "none")),
        ("", (None, "none")),
    ],
)
def test_extraction(completion: str, expected: tuple) -> None:
    assert extract_answer(completion) == expected


def test_extraction_strategies_are_configurable() -> None:
    assert extract_answer("value 3, \\boxed{4}", strategies=("last_number",)) == ("4", "last_number")
    assert extract_answer("The answer is 5", strategies=("boxed",)) == (None, "none")
    assert not check("The answer is 5", "5", strategies=("boxed",))
    assert check("The answer is 5", "5", strategies=("boxed", "answer_is"))


@pytest.mark.parametrize(
    "answer, gold",
    [
        ("\\frac{1}{2}", "0.5"),
        ("1/2", "\\frac12"),
        ("0.75", "\\frac{3}{4}"),
        ("50\\%", "50"),
        ("50%", "0.5"),
        ("0.5", "50\\%"),
        ("10 \\text{ cm}", "10"),
        ("\\$5", "5"),
        ("1,000", "1000"),
        ("[1, 2)", "[1,2)"),
        ("(0, \\infty)", "(0,\\infty)"),
        ("\\{3, 1, 2\\}", "\\{1,2,3\\}"),
        ("(1, 2)", "(1,2)"),
        ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
        ("(x+1)^2", "x^2+2x+1"),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
        ("x = 3", "3"),
        ("\\pi", "3.141592653589793"),
        ("\\text{(B)}", "B"),
        ("\u22125", "-5"),
        ("\u00bd", "0.5"),
        ("x\u00b2", "x^2"),
    ],
)
def test_equivalent_answers(answer: str, gold: str) -> None:
    assert check(f"Therefore \\boxed{{{answer}}}.", gold)


@pytest.mark.parametrize(
    "answer, gold",
    [
        ("\\frac{1}{3}", "0.5"),
        ("[1, 2)", "(1,2]"),
        ("\\{1, 2\\}", "\\{1,2,3\\}"),
        ("(2, 1)", "(1,2)"),
        ("\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
        ("(x+1)^3", "x^2+2x+1"),
        ("51\\%", "0.5"),
        ("12", "13"),
        ("C", "B"),
    ],
)
def test_different_answers(answer: str, gold: str) -> None:
    assert not check(f"Therefore \\boxed{{{answer}}}.", gold)


def test_plain_number_answers_with_words_and_unicode() -> None:
    assert check("Answer: 12 apples.", "12")
    assert check("\uff11\uff12", "12")  # full-width digits
    assert not check("so 12 apples", "13")


def test_think_block_does_not_count_when_a_final_answer_follows() -> None:
    completion = "<think>I first thought \\boxed{3}.</think>\nSo the answer is 4."
    assert check(completion, "4")
    assert not check(completion, "3")


def test_think_fallback_when_no_final_answer() -> None:
    truncated = "<think>the result is \\boxed{3} but let me double-check"
    assert check(truncated, "3")
    assert not check(truncated, "3", think_fallback=False)
    out = MATH.score(RewardInput(prompt="", completion=truncated, reference="3"))
    assert out.details["method"] == "think:boxed"


@pytest.mark.parametrize("reference, expected", [(42, True), (42.0, True), (["41", 42], True), ([41, "43"], False)])
def test_reference_types(reference: object, expected: bool) -> None:
    assert check("\\boxed{42}", reference) is expected


@pytest.mark.parametrize("reference", [None, {"a": 1}, [], [None], True, object()])
def test_wrong_reference_type_is_an_error_not_a_crash(reference: object) -> None:
    out = MATH.score(RewardInput(prompt="", completion="\\boxed{1}", reference=reference))
    assert out.score == 0.0 and not out.correct and out.error


HOSTILE = [
    ("nul bytes", "The answer is \x00\\boxed{4\x00}\x00", "4", True),
    ("1 MB of text", "blah " * 200_000 + "\\boxed{4}", "4", True),
    ("1 MB of digits", "1" * 1_000_000, "1", False),
    ("1 MB of braces", "\\boxed{" + "{" * 1_000_000, "1", False),
    ("1 MB 'answer is'", "answer is " * 100_000, "1", False),
    ("invalid utf-8 (surrogates)", "caf\udce9 \\boxed{4}", "4", True),
    ("odd unicode", "\u202e\u200b\ufeff\U0001f600 \\boxed{4}\u0301", "4", True),
    ("power tower", "\\boxed{10^10^10^10}", "5", False),
    ("power tower, braces", "\\boxed{10^{10^{10^{10}}}}", "5", False),
    ("python power tower", "The answer is 9**9**9**9", "5", False),
    ("huge exponent", "\\boxed{2^{123456789}}", "5", False),
    ("huge factorial", "\\boxed{100000!}", "5", False),
    ("pathological latex", "\\boxed{\\frac{\\frac{\\frac{" * 200 + "}", "1", False),
    ("deep nesting", "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}", "1", False),
    ("unbalanced latex", "\\boxed{\\left( \\right] \\begin{pmatrix} & \\\\ }", "1", False),
    ("empty", "", "1", False),
    ("whitespace", " \n\t ", "1", False),
    ("empty reference", "\\boxed{1}", "", False),
]


@pytest.mark.parametrize("name, completion, reference, expected", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_inputs_are_scored(name: str, completion: str, reference: str, expected: bool) -> None:
    # A hang here (sympy evaluating a power tower in C) is stopped by pytest-timeout, not by a clock
    # assert; what keeps sympy away from such answers is checked below.
    out = MATH.score(RewardInput(prompt="", completion=completion, reference=reference))
    assert out.correct is expected
    assert 0.0 <= out.score <= 1.0


EXPLOSIVE = ["\\boxed{10^10^10^10}", "\\boxed{10^{10^{10^{10}}}}", "The answer is 9**9**9**9", "\\boxed{2^{123456789}}",
             "\\boxed{100000!}", "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}"]


@pytest.mark.parametrize("completion", EXPLOSIVE)
def test_explosive_answers_never_reach_sympy(completion: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Power towers, huge exponents and factorials are compared as strings: math-verify (whose C-level
    evaluation no timeout can stop) is never called with them."""
    import rewards.math

    def forbidden(*args: object, **kwargs: object) -> bool:
        raise AssertionError(f"math-verify called with {args!r:.80}")

    monkeypatch.setattr(rewards.math, "_verify", forbidden)
    out = MATH.score(RewardInput(prompt="", completion=completion, reference="5"))
    assert out.error is None and not out.correct


def test_tower_equal_to_itself_is_compared_as_string() -> None:
    assert check("\\boxed{10^{10^{10}}}", "10^{10^{10}}")
    assert is_explosive("9**9**9", 1000) and is_explosive("2^{12345678}", 1000)
    assert not is_explosive("x^2 + y^2", 1000)


def test_normalize_answer() -> None:
    assert normalize_answer("$50%$.") == ("50\\%", True)
    assert normalize_answer("12 apples") == ("12", False)
    assert normalize_answer("x\u00b2") == ("x^2", False)


def test_works_off_the_main_thread() -> None:
    """math-verify's SIGALRM timeout only works on the main thread; elsewhere it must still score."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        outs = list(ex.map(MATH.score, [RewardInput(prompt="", completion="\\boxed{0.5}", reference="1/2")] * 4))
    assert all(o.correct and o.error is None for o in outs)


def test_callers_alarm_survives_math_verify() -> None:
    """math-verify uses signal.alarm; a timer the caller set (e.g. pytest-timeout) must stay armed."""
    import signal

    fired: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    try:
        start = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 300.0)
        assert check("\\boxed{(x+1)^2}", "x^2+2x+1")
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        elapsed = time.monotonic() - start
        # Still armed, and re-armed with what was left (not the full 300 s again), however long scoring took.
        assert 0.0 < remaining <= 300.0 - elapsed + 1.0, (remaining, elapsed)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not fired
