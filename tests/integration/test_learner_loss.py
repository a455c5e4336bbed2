"""The loss through the real DeepSpeed learner: micro-batching must not change the gradient.

Every aggregation divides by constants of the whole optimizer step (tokens, sequences, and for
Dr. GRPO's ``seq_mean_token_sum`` the run's maximum response length), so the micro-batches' shares
add up to the whole-batch loss and gradient however the batch is cut: one sequence at a time, by a
token budget, or packed into rows (``learner.pack_tokens``: checked, split over two sequence-parallel
ranks too, in ``test_sequence_parallel.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from ray.util.placement_group import remove_placement_group

from rlplat.algo.batching import split_for_ranks
from rlplat.algo.losses import AggregationMode
from rlplat.algo.stats import reduce_optimizer_step
from rlplat.config.schema import ClusterConfig, Config, GRPOConfig, LearnerConfig
from rlplat.distributed.cluster import create_placement_group
from rlplat.distributed.placement import plan_placement
from rlplat.learner.group import LearnerGroup
from rlplat.runtime.stage_actors import learner_spec
from rlplat.types import TrainSequence

pytestmark = pytest.mark.slow


def _sequences() -> list[TrainSequence]:
    """Eight sequences of different completion lengths, so micro-batches pad differently."""
    rng = random.Random(0)
    return [TrainSequence(tuple(rng.randrange(4, 90) for _ in range(5)),
                          tuple(rng.randrange(4, 90) for _ in range(n)),
                          tuple(-4.0 + 0.1 * rng.random() for _ in range(n)), rng.choice((-1.0, 0.5, 1.5)))
            for n in (3, 11, 5, 17, 2, 8, 13, 6)]


@pytest.fixture()
def one_rank(ray_local: None, tiny_model: str) -> Iterator[Callable[..., LearnerGroup]]:
    cluster = ClusterConfig(devices_per_node=1)
    plan = replace(plan_placement(cluster, Config().rollout), engine_bundles=())
    pg = create_placement_group(plan, 60)

    def group(loss_agg: AggregationMode, **learner: Any) -> LearnerGroup:
        cfg = Config(cluster=cluster, grpo=GRPOConfig(loss_agg=loss_agg),
                     learner=LearnerConfig(lr=1e-6, warmup_steps=0, reference_model=False, **learner))
        return LearnerGroup(learner_spec(cfg, tiny_model, cfg.learner.lr), plan, pg, cfg.timeouts).wait_started()

    yield group
    remove_placement_group(pg)


# One sequence (padded to itself) at a time; a budget of 40 positions.
_CUTS = {"one_each": {"micro_batch_size": 1}, "budget": {"max_tokens_per_micro_batch": 40}}


def _train_once(one_rank: Callable[..., LearnerGroup], loss_agg: AggregationMode, **learner: Any) -> dict[str, float]:
    """One optimizer step of a fresh rank on the eight sequences; its reduced statistics."""
    learners = one_rank(loss_agg, **learner)
    try:
        return reduce_optimizer_step(learners.train_step(split_for_ranks(_sequences(), 1)))
    finally:
        learners.shutdown()


# The whole batch at once, per aggregation: computed once, compared with every cut of it.
_WHOLE: dict[str, dict[str, float]] = {}


# Each aggregation with one cut, each cut once: a fresh rank costs seconds of start-up.
# Packed rows under a budget, for seq_mean_token_mean: test_sequence_parallel.py (split over two ranks).
@pytest.mark.parametrize(("loss_agg", "cut"), [("seq_mean_token_sum", "one_each"), ("token_mean", "budget")])
def test_micro_batches_add_up_to_the_whole_batch_gradient(one_rank: Callable[..., LearnerGroup],
                                                          loss_agg: AggregationMode, cut: str) -> None:
    if loss_agg not in _WHOLE:
        _WHOLE[loss_agg] = _train_once(one_rank, loss_agg, micro_batch_size=8)
    whole, split = _WHOLE[loss_agg], _train_once(one_rank, loss_agg, **_CUTS[cut])
    assert split["loss/policy"] == pytest.approx(whole["loss/policy"], rel=1e-5, abs=1e-7)
    assert split["grad_norm"] == pytest.approx(whole["grad_norm"], rel=1e-4)
    assert whole["grad_norm"] > 0
    assert split["positions/real"] == whole["positions/real"] == sum(5 + n for n in (3, 11, 5, 17, 2, 8, 13, 6))
