"""``rewards.last_boxed``: the one ``\\boxed{...}`` extractor (math reward and dataset references)."""

from __future__ import annotations

import pytest

from rewards import last_boxed
from rewards.extract import braced_argument


@pytest.mark.parametrize(
    "text, expected",
    [
        # nested braces
        ("so $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("\\boxed{\\frac{\\sqrt{2}}{\\sqrt{3}}}", "\\frac{\\sqrt{2}}{\\sqrt{3}}"),
        ("\\boxed{1} then \\boxed{ {2} }", "{2}"),
        ("\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
        # escaped braces are not group braces, balanced or not
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("nested \\boxed{\\{1, \\{2\\}\\}} done", "\\{1, \\{2\\}\\}"),
        ("\\boxed{\\left\\{ x \\right.}", "\\left\\{ x \\right."),
        ("\\boxed{\\}}", "\\}"),
        ("\\boxed{a\\\\}", "a\\\\"),  # a LaTeX line break before the closing brace
        # \fbox and the brace-less form
        ("\\fbox{7}", "7"),
        ("\\fbox{9} and later \\boxed{10}", "10"),
        ("\\boxed 5 is it", "5"),
        ("\\boxed  42$", "42"),
        # the last box wins; a truncated or empty last box falls back to the one before
        ("\\boxed{7} then \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("ok \\boxed{3} then truncated \\boxed{4", "3"),
        ("\\boxed{3} \\boxed{}", "3"),
        # nothing usable
        ("\\boxed{unbalanced", None),
        ("\\boxed{\\}", None),
        ("\\boxed{}", None),
        ("\\boxed", None),
        ("\\boxed   ", None),
        ("no box", None),
        ("", None),
        ("\\boxedx{1}", None),  # another control word, not \boxed
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


def test_braced_argument_positions() -> None:
    assert braced_argument("{a{b}c}d", 0) == "a{b}c"
    assert braced_argument("x   {y}", 1) == "y"
    assert braced_argument("{never closed", 0) is None


def test_hostile_sizes_are_handled() -> None:
    assert last_boxed("\\boxed{" + "{" * 1_000_000) is None
    assert last_boxed("\\boxed{1}" + "\\boxed{" * 100_000) is None  # only the last boxes are tried
    assert last_boxed("x" * 1_000_000 + "\\boxed{2}") == "2"


def test_one_implementation() -> None:
    import rewards.math

    assert "last_boxed" in rewards.__all__
    assert rewards.math._EXTRACTORS["boxed"] is last_boxed
    assert rewards.math.extract_answer("so \\boxed{\\left\\{ x \\right.}") == ("\\left\\{ x \\right.", "boxed")
