"""The built-in arithmetic task: distinct problems, disjoint splits, correct worked solutions."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from rlplat.config.schema import SyntheticTaskConfig
from rlplat.data.synthetic import ArithProblem, make_problems, solution, split_problems, teacher_solutions

SUM2 = SyntheticTaskConfig(digits=2)
SPREAD = SyntheticTaskConfig(task="spread", digits=4, max_terms=4)


def test_problems_are_distinct_reproducible_and_within_the_digits() -> None:
    problems = make_problems(300, SUM2, seed=1, prefix="t")
    assert len({p.terms for p in problems}) == 300 and [p.uid for p in problems[:2]] == ["t:0", "t:1"]
    assert all(len(p.terms) == 2 and all(0 <= t < 100 for t in p.terms) for p in problems)
    assert make_problems(300, SUM2, 1, "t") == problems and make_problems(300, SUM2, 2, "t") != problems
    with pytest.raises(ValueError, match="distinct"):
        make_problems(101, SyntheticTaskConfig(digits=1), seed=0, prefix="t")


def test_rl_problems_never_repeat_a_warm_start_problem() -> None:
    for task in (SyntheticTaskConfig(num_train=2000, num_rl=1000), SPREAD):
        train, rl = split_problems(task, seed=0)
        assert len(train) == task.num_train and len(rl) == task.num_rl
        assert not {p.terms for p in train} & {p.terms for p in rl}


def test_the_spread_task_draws_every_level_equally_often() -> None:
    problems = make_problems(2400, SPREAD, seed=0, prefix="s")
    levels = Counter((p.level["digits"], p.level["terms"]) for p in problems)
    assert set(levels) == {(d, t) for d in range(1, 5) for t in range(2, 5)}  # 4 lengths x 3 term counts
    # Two one-digit numbers make only 100 distinct problems; every other level has plenty.
    assert levels.pop((1, 2)) <= 100
    assert min(levels.values()) > 0.7 * 2400 / 12 and max(levels.values()) < 1.3 * 2400 / 12
    for p in problems:
        d, t = p.level["digits"], p.level["terms"]
        assert len(p.terms) == t and all(len(str(x)) == d for x in p.terms)  # exactly d digits each
        assert p.level["difficulty"] == d - 1 + t - 2 and p.answer == str(sum(p.terms))
    assert p.question == "+".join(map(str, p.terms))


def test_difficulty_is_in_the_prompt_metadata() -> None:
    from rlplat.data.synthetic import to_prompt_items

    (item,) = to_prompt_items([ArithProblem("u", (123, 456, 789))], None)  # the plain prompt fallback
    assert item.metadata == {"thinking": "on", "digits": 3, "terms": 3, "difficulty": 3}
    assert "difficulty" not in item.text and item.reference == "1368"


@pytest.mark.parametrize("terms", [(7, 5), (99, 1), (0, 0), (58, 47), (3, 96), (99, 99, 99, 99), (5, 123, 9999)])
def test_worked_solution_carries_right_and_ends_with_the_sum(terms: tuple[int, ...]) -> None:
    text = solution(ArithProblem("u", terms))
    think, answer = re.fullmatch(r"<think>(.*)</think>(\d+)", text).groups()  # type: ignore[union-attr]
    assert int(answer) == sum(terms)
    digits, carry = [], 0
    for step in think.split(","):
        lhs, rhs = step.split("=")
        assert sum(int(t) for t in lhs.split("+")) == int(rhs)
        digits.append(int(rhs) % 10)
        carry = int(rhs) // 10
    assert int("".join(map(str, ([carry] if carry else []) + digits[::-1]))) == sum(terms)


def test_teacher_slips_at_the_configured_rate_and_only_in_the_answer() -> None:
    problems = make_problems(2000, SUM2, seed=0, prefix="t")
    sols = teacher_solutions(problems, accuracy=0.3, seed=0)
    right = [s == solution(p) for p, s in zip(problems, sols)]
    assert 0.25 < sum(right) / len(right) < 0.35
    for p, s in zip(problems, sols):
        assert s.split("</think>")[0] == solution(p).split("</think>")[0]
        assert len(s.split("</think>")[1]) == len(p.answer)
