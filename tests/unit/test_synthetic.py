"""The built-in arithmetic task: distinct problems, disjoint splits, correct worked solutions."""

from __future__ import annotations

import re

import pytest

from rlplat.data.synthetic import make_problems, solution, split_problems, teacher_solutions


def test_problems_are_distinct_reproducible_and_within_the_digits() -> None:
    problems = make_problems(300, digits=2, seed=1, prefix="t")
    assert len({(p.a, p.b) for p in problems}) == 300 and [p.uid for p in problems[:2]] == ["t:0", "t:1"]
    assert all(0 <= p.a < 100 and 0 <= p.b < 100 for p in problems)
    assert make_problems(300, 2, 1, "t") == problems and make_problems(300, 2, 2, "t") != problems
    with pytest.raises(ValueError, match="distinct"):
        make_problems(101, digits=1, seed=0, prefix="t")


def test_rl_problems_never_repeat_a_warm_start_problem() -> None:
    train, rl = split_problems(2, 2000, 1000, seed=0)
    assert not {(p.a, p.b) for p in train} & {(p.a, p.b) for p in rl}


@pytest.mark.parametrize("a, b", [(7, 5), (99, 1), (0, 0), (58, 47), (3, 96)])
def test_worked_solution_carries_right_and_ends_with_the_sum(a: int, b: int) -> None:
    from rlplat.data.synthetic import ArithProblem

    text = solution(ArithProblem("u", a, b))
    think, answer = re.fullmatch(r"<think>(.*)</think>(\d+)", text).groups()  # type: ignore[union-attr]
    assert int(answer) == a + b
    digits, carry = [], 0
    for step in think.split(","):
        lhs, rhs = step.split("=")
        assert sum(int(t) for t in lhs.split("+")) == int(rhs)
        digits.append(int(rhs) % 10)
        carry = int(rhs) // 10
    assert int("".join(map(str, ([carry] if carry else []) + digits[::-1]))) == a + b


def test_teacher_slips_at_the_configured_rate_and_only_in_the_answer() -> None:
    problems = make_problems(2000, 2, seed=0, prefix="t")
    sols = teacher_solutions(problems, accuracy=0.3, seed=0)
    right = [s == solution(p) for p, s in zip(problems, sols)]
    assert 0.25 < sum(right) / len(right) < 0.35
    for p, s in zip(problems, sols):
        assert s.split("</think>")[0] == solution(p).split("</think>")[0]
        assert len(s.split("</think>")[1]) == len(p.answer)
