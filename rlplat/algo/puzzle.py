"""Puzzle's search (arXiv 2411.19146, section 3.3): one block variant per layer, chosen by a
mixed-integer program that minimises the summed quality cost under resource budgets.

The problem is a grid: ``scores[l, v]`` is the quality cost of putting variant ``v`` at layer ``l``
(Puzzle: the KL to the parent when only that block is replaced; the parent's own block scores 0),
``costs[name][l, v]`` what it uses of each resource (latency, memory, ...), and ``budgets[name]`` the
most the whole child may use. Binary ``x[l, v]`` picks variants::

    minimise   sum_lv scores[l, v] x[l, v]
    subject to sum_v x[l, v] = 1                  for every layer l
               sum_lv costs[r][l, v] x[l, v] <= budgets[r]   for every resource r
               sum_l x[l, s_l] <= max_shared     for every earlier solution s (diversity)

The last row is the paper's diversity constraint: an alternative solution shares at most
``max_shared`` layer choices with each solution found before it. A variant that does not exist at
a layer has a non-finite score and is left out. HiGHS solves it (``scipy.optimize.milp``).

Greedy and random baselines solve the same problem for comparison. Plain numpy and scipy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

Choice = tuple[int, ...]  # the variant index of each layer

FloatArray = NDArray[np.float64]
# Budgets hold to this relative tolerance (the MIP solver's own feasibility tolerance is about 1e-7).
FEASIBILITY_TOL = 1e-6


class Infeasible(ValueError):
    """No choice of variants meets every budget (and diversity row)."""


@dataclass(frozen=True)
class SearchProblem:
    """A Puzzle search: ``scores`` ``[layers, variants]`` and, per resource, ``costs`` of the same
    shape and a ``budgets`` entry. Non-finite scores mark variants a layer does not have."""

    scores: FloatArray
    costs: Mapping[str, FloatArray] = field(default_factory=dict)
    budgets: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scores.ndim != 2 or 0 in self.scores.shape:
            raise ValueError(f"scores must be a non-empty [layers, variants] array, got shape {self.scores.shape}")
        if set(self.costs) != set(self.budgets):
            raise ValueError(f"every resource needs costs and a budget: costs {sorted(self.costs)}, "
                             f"budgets {sorted(self.budgets)}")
        for name, c in self.costs.items():
            if c.shape != self.scores.shape:
                raise ValueError(f"costs[{name!r}] has shape {c.shape}, scores {self.scores.shape}")
        if not np.isfinite(self.scores).any(axis=1).all():
            raise ValueError("every layer needs at least one variant with a finite score")

    @property
    def allowed(self) -> NDArray[np.bool_]:
        return np.isfinite(self.scores)

    def total(self, choice: Choice) -> float:
        """Summed score of ``choice``."""
        return float(sum(self.scores[layer, v] for layer, v in enumerate(choice)))

    def usage(self, choice: Choice) -> dict[str, float]:
        """What ``choice`` uses of each resource."""
        return {name: float(sum(c[layer, v] for layer, v in enumerate(choice))) for name, c in self.costs.items()}

    def feasible(self, choice: Choice, tol: float = FEASIBILITY_TOL) -> bool:
        """Whether ``choice`` picks an existing variant at every layer and meets every budget (to a
        relative ``tol``)."""
        if len(choice) != self.scores.shape[0] or not all(self.allowed[layer, v] for layer, v in enumerate(choice)):
            return False
        return all(used <= self.budgets[name] + tol * max(abs(self.budgets[name]), 1e-12)
                   for name, used in self.usage(choice).items())


def solve_mip(problem: SearchProblem, avoid: Sequence[Choice] = (), max_shared: int | None = None,
              time_limit_s: float = 60.0) -> Choice:
    """The choice of least total score within every budget (HiGHS). With ``avoid`` (earlier
    solutions) and ``max_shared``, it shares at most ``max_shared`` layer choices with each of them.

    Raises:
        Infeasible: no choice meets the constraints.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    layers, variants = problem.scores.shape
    allowed = problem.allowed.ravel()
    c = np.where(allowed, np.nan_to_num(problem.scores.ravel(), posinf=0.0, neginf=0.0), 0.0)
    rows, lo, hi = [], [], []
    for layer in range(layers):  # exactly one variant per layer
        row = np.zeros(layers * variants)
        row[layer * variants:(layer + 1) * variants] = 1.0
        rows.append(row)
        lo.append(1.0)
        hi.append(1.0)
    for name, cost in problem.costs.items():
        # Each budget row is scaled to 1, so that HiGHS's absolute feasibility tolerance (about
        # 1e-7) is one relative to the budget, whatever unit the resource is in.
        scale = 1.0 / max(abs(problem.budgets[name]), 1e-300)
        rows.append(np.where(allowed, cost.ravel(), 0.0) * scale)
        lo.append(-np.inf)
        hi.append(problem.budgets[name] * scale)
    if avoid and max_shared is None:
        raise ValueError("avoid needs max_shared (how many layer choices an alternative may share)")
    for earlier in avoid:
        row = np.zeros(layers * variants)
        row[[layer * variants + v for layer, v in enumerate(earlier)]] = 1.0
        rows.append(row)
        lo.append(-np.inf)
        hi.append(float(max_shared or 0))
    upper = allowed.astype(float)  # a missing variant is fixed at 0
    result = milp(c, constraints=LinearConstraint(np.array(rows), lo, hi), integrality=np.ones_like(c),
                  bounds=Bounds(np.zeros_like(c), upper), options={"time_limit": time_limit_s})
    if result.x is None:
        raise Infeasible(f"no choice of variants meets the budgets {dict(problem.budgets)} "
                         f"({result.message})")
    x = np.rint(result.x).reshape(layers, variants)
    return tuple(int(np.argmax(x[layer])) for layer in range(layers))


def solve_greedy(problem: SearchProblem, start: Choice | None = None) -> Choice:
    """Greedy baseline: from ``start`` (default: the least-score variant of each layer), repeatedly
    make the single-layer change with the least score increase per unit of budget excess removed,
    until every budget is met.

    Raises:
        Infeasible: no single change reduces the excess any more.
    """
    choice = list(start if start is not None else np.nanargmin(np.where(problem.allowed, problem.scores, np.inf),
                                                                 axis=1))
    while not problem.feasible(tuple(choice)):
        excess = _excess(problem, tuple(choice))
        best: tuple[float, int, int] | None = None
        for layer, v in zip(*np.nonzero(problem.allowed), strict=True):
            trial = [*choice[:layer], int(v), *choice[layer + 1:]]
            removed = excess - _excess(problem, tuple(trial))
            if removed <= 1e-12:
                continue
            rate = (problem.scores[layer, v] - problem.scores[layer, choice[layer]]) / removed
            if best is None or rate < best[0]:
                best = (float(rate), int(layer), int(v))
        if best is None:
            raise Infeasible(f"greedy search is stuck above the budgets {dict(problem.budgets)}")
        choice[best[1]] = best[2]
    return tuple(int(v) for v in choice)


def _excess(problem: SearchProblem, choice: Choice) -> float:
    """How far ``choice`` is above the budgets, each resource relative to its budget, summed."""
    return sum(max(0.0, used - problem.budgets[name]) / max(abs(problem.budgets[name]), 1e-12)
               for name, used in problem.usage(choice).items())


def solve_random(problem: SearchProblem, samples: int, seed: int = 0) -> Choice:
    """Random baseline: the best-scoring feasible choice among ``samples`` uniform draws of one
    existing variant per layer.

    Raises:
        Infeasible: none of the draws meets the budgets.
    """
    rng = np.random.default_rng(seed)
    options = [np.flatnonzero(row) for row in problem.allowed]
    best: Choice | None = None
    for _ in range(samples):
        choice = tuple(int(rng.choice(opts)) for opts in options)
        if problem.feasible(choice) and (best is None or problem.total(choice) < problem.total(best)):
            best = choice
    if best is None:
        raise Infeasible(f"none of {samples} random choices meets the budgets {dict(problem.budgets)}")
    return best
