"""rlplat.algo.puzzle: the MIP finds the optimum within every budget (checked by enumeration), keeps
alternative solutions diverse, and beats the greedy baseline on a case built to mislead greedy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rlplat.algo.puzzle import Infeasible, SearchProblem, solve_greedy, solve_mip, solve_random


def _random_problem(seed: int, layers: int = 5, variants: int = 3) -> SearchProblem:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.0, 1.0, (layers, variants))
    scores[:, 0] = 0.0  # the parent's block
    scores[rng.integers(0, layers), 2] = np.inf  # a variant one layer lacks
    latency = rng.uniform(0.2, 1.0, (layers, variants))
    latency[:, 0] = 1.0
    memory = rng.uniform(0.1, 1.0, (layers, variants))
    memory[:, 0] = 1.0
    return SearchProblem(scores, {"latency": latency, "memory": memory},
                         {"latency": 0.7 * layers, "memory": 0.75 * layers})


def _brute_force(problem: SearchProblem) -> float:
    layers, variants = problem.scores.shape
    totals = [problem.total(c) for c in itertools.product(range(variants), repeat=layers) if problem.feasible(c)]
    return min(totals)


@pytest.mark.parametrize("seed", range(6))
def test_mip_is_optimal_and_feasible(seed: int) -> None:
    problem = _random_problem(seed)
    choice = solve_mip(problem)
    assert problem.feasible(choice)
    assert problem.total(choice) == pytest.approx(_brute_force(problem), abs=1e-9)
    # the baselines are feasible and never better
    for other in (solve_greedy(problem), solve_random(problem, samples=200, seed=seed)):
        assert problem.feasible(other) and problem.total(other) >= problem.total(choice) - 1e-9


def test_mip_beats_greedy_on_a_constructed_case() -> None:
    # Three layers at cost 10 each, budget 20. Greedy first takes the best score per unit saved
    # (layer 0: saves 6 at score 3.0), then must still save 4 (layer 1: 2.6): 5.6 in all. The
    # optimum replaces layers 1 and 2 (saving exactly 10 for 5.2).
    scores = np.array([[0.0, 3.0], [0.0, 2.6], [0.0, 2.6]])
    latency = np.array([[10.0, 4.0], [10.0, 5.0], [10.0, 5.0]])
    problem = SearchProblem(scores, {"latency": latency}, {"latency": 20.0})
    greedy, mip = solve_greedy(problem), solve_mip(problem)
    assert greedy == (1, 1, 0) and problem.total(greedy) == pytest.approx(5.6)
    assert mip == (0, 1, 1) and problem.total(mip) == pytest.approx(5.2)


def test_diversity_constraint() -> None:
    problem = _random_problem(3, layers=6)
    first = solve_mip(problem)
    second = solve_mip(problem, avoid=[first], max_shared=3)
    third = solve_mip(problem, avoid=[first, second], max_shared=3)
    for alt in (second, third):
        assert problem.feasible(alt)
        assert sum(a == b for a, b in zip(alt, first)) <= 3
    assert sum(a == b for a, b in zip(third, second)) <= 3
    assert problem.total(first) <= problem.total(second) <= problem.total(third) + 1e-9
    with pytest.raises(ValueError, match="max_shared"):
        solve_mip(problem, avoid=[first])


def test_missing_variants_are_never_chosen() -> None:
    scores = np.array([[0.0, np.inf], [0.0, 0.1]])
    cost = np.array([[1.0, 0.0], [1.0, 0.5]])  # the missing variant would be free
    problem = SearchProblem(scores, {"latency": cost}, {"latency": 1.5})
    assert solve_mip(problem) == (0, 1)


def test_infeasible_budgets_are_reported() -> None:
    problem = SearchProblem(np.zeros((2, 2)), {"memory": np.ones((2, 2))}, {"memory": 1.0})
    for solve in (solve_mip, solve_greedy, lambda p: solve_random(p, samples=20)):
        with pytest.raises(Infeasible, match="budgets"):
            solve(problem)


@pytest.mark.parametrize("kwargs, message", [
    ({"scores": np.zeros(3)}, "layers, variants"),
    ({"scores": np.zeros((2, 2)), "costs": {"m": np.ones((2, 2))}}, "costs and a budget"),
    ({"scores": np.zeros((2, 2)), "costs": {"m": np.ones((3, 2))}, "budgets": {"m": 1.0}}, "shape"),
    ({"scores": np.full((2, 2), np.inf)}, "finite score"),
])
def test_bad_problems_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchProblem(**kwargs)  # type: ignore[arg-type]
