"""Ulysses sequence parallelism: two ranks splitting every sequence compute what one rank computes
whole (``rlplat/learner/ulysses.py``).

Through the real DeepSpeed learner: one rank with the whole batch in one micro-batch
(``learner.sequence_parallel=1``) and a group of two (``=2``, ZeRO-3 built sharded, so the reference
is a ZeRO-3 inference engine, gradient checkpointing, so the backward pass runs the attention's
all-to-alls again, micro-batches cut by a token budget and packed into rows) take the same
batch through the same calls: the old-log-prob pass, a GRPO step with TIS weights, the pass again
under the new weights, a second GRPO step (whose loss now holds the reference's KL term), an SFT
step on right-padded rows, and the pass once more. Log-probs, losses and gradient norms agree to
float32 tolerance, and so do the weights each step leaves. So this is also the check, through the
real learner, that a step cut into micro-batches (by a token budget, packed) adds up to the whole
batch's loss and gradient: DeepSpeed's accumulation with ``scale_wrt_gas=False`` and the global
normalisers (``tests/unit/test_algo.py`` checks the algebra for every aggregation). Statistics that
average micro-batch means, such as ``entropy``, depend on the cut and are not compared.

And the attention alone, on two processes over gloo: the tiny Llama (transformers' attention
registry) and the heterogeneous DeciLM child (GQA with 1, 2 and 4 KV heads, blocks without
attention), padded and packed rows: per-token log-probs and entropy, and the summed gradients,
against the unsplit model.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from ray.util.placement_group import remove_placement_group

from rlplat.algo.batching import split_for_ranks
from rlplat.algo.stats import reduce_optimizer_step
from rlplat.config.schema import ClusterConfig, Config, GRPOConfig, LearnerConfig, MismatchConfig, ModelConfig
from rlplat.distributed.cluster import create_placement_group
from rlplat.distributed.placement import plan_placement
from rlplat.learner.group import LearnerGroup
from rlplat.runtime.stage_actors import learner_spec
from rlplat.types import TrainSequence, TrainShard

pytestmark = pytest.mark.slow


# (prompt, completion) lengths, odd and even (a split row's last rank gets padding).
LENGTHS = ((5, 3), (4, 11), (6, 5), (5, 17), (3, 2), (5, 8), (7, 13), (5, 6))


def _sequences() -> list[TrainSequence]:
    rng = random.Random(1)
    return [TrainSequence(tuple(rng.randrange(4, 90) for _ in range(p)),
                          tuple(rng.randrange(4, 90) for _ in range(n)),
                          tuple(-4.0 + 0.1 * rng.random() for _ in range(n)), rng.choice((-1.0, 0.5, 1.5)))
            for p, n in LENGTHS]


SEQUENCES = _sequences()


def _run(ranks: int, tiny_model: str, checkpointing: bool = False, **learner: Any) -> dict[str, Any]:
    """The calls of the module docstring on a fresh group of ``ranks`` learners; what each returned."""
    cluster = ClusterConfig(devices_per_node=ranks)
    plan = replace(plan_placement(cluster, Config().rollout), engine_bundles=())
    pg = create_placement_group(plan, 60)
    cfg = Config(cluster=cluster, grpo=GRPOConfig(kl_coef=0.1, mismatch=MismatchConfig(mode="tis"),
                                                  loss_agg="seq_mean_token_mean"),
                 learner=LearnerConfig(lr=1e-3, warmup_steps=0, **learner),
                 model=ModelConfig(gradient_checkpointing=checkpointing))
    group = LearnerGroup(learner_spec(cfg, tiny_model, cfg.learner.lr), plan, pg, cfg.timeouts).wait_started()
    try:
        assert group.world_size == 1  # one data-parallel shard either way
        shards = split_for_ranks(SEQUENCES, 1, on_policy=True)
        before = group.old_logprobs(shards)
        grpo = reduce_optimizer_step(group.train_step(before))
        after = group.old_logprobs(shards)
        grpo2 = reduce_optimizer_step(group.train_step(after))
        sft = reduce_optimizer_step(group.sft_step(shards, lr=1e-3))
        last = group.old_logprobs(shards)
        return {"before": _logprobs(before), "grpo": grpo, "after": _logprobs(after), "grpo2": grpo2, "sft": sft,
                "last": _logprobs(last)}
    finally:
        group.shutdown()
        remove_placement_group(pg)


def _logprobs(shards: list[TrainShard]) -> list[float]:
    return [lp for s in shards for seq in s.sequences for lp in seq.learner_logprobs]


@pytest.fixture(scope="module")
def runs(ray_local: None, tiny_model: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    yield (_run(1, tiny_model, micro_batch_size=8),
           _run(2, tiny_model, checkpointing=True, sequence_parallel=2, zero_stage=3, max_tokens_per_micro_batch=48,
                pack_tokens=24))


@pytest.mark.parametrize("pass_", ["before", "after", "last"])
def test_log_probs_equal_whole_rows(runs: tuple[dict[str, Any], dict[str, Any]], pass_: str) -> None:
    one, split = runs
    assert len(split[pass_]) == len(one[pass_]) == sum(n for _, n in LENGTHS)
    assert split[pass_] == pytest.approx(one[pass_], abs=2e-5)


def test_the_updates_moved_the_weights(runs: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Guard of the comparisons above: each step changed what the passes compute."""
    one, _ = runs
    assert max(abs(a - b) for a, b in zip(one["before"], one["after"], strict=True)) > 1e-3
    assert max(abs(a - b) for a, b in zip(one["after"], one["last"], strict=True)) > 1e-3
    assert one["grpo2"]["kl"] > 1e-6  # the policy moved from the reference: the KL term is live


@pytest.mark.parametrize(("step", "keys"), [
    ("grpo", ("loss/policy", "grad_norm", "positions/real")),
    ("grpo2", ("loss/policy", "grad_norm", "positions/real")),
    ("sft", ("loss/sft", "grad_norm", "positions/real")),
])
def test_step_statistics_equal(runs: tuple[dict[str, Any], dict[str, Any]], step: str, keys: tuple[str, ...]) -> None:
    one, split = runs
    assert one[step]["grad_norm"] > 0
    for key in keys:
        assert split[step][key] == pytest.approx(one[step][key], rel=1e-4, abs=1e-6), key
    if step == "grpo":  # packed rows compute fewer padding positions than the whole padded batch
        assert split[step]["positions/real_share"] > one[step]["positions/real_share"]


def test_ulysses_attention_equals_whole_sequences(tiny_model: str, decilm_child: tuple[Any, Any]) -> None:
    import torch.multiprocessing as mp
    from ulysses_ranks import attention_rank  # a module of its own: the spawned ranks import only it

    from launch_helpers import free_port

    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(attention_rank, args=(free_port(), [("hf", tiny_model), ("decilm", str(decilm_child[0]))],
                                       SEQUENCES, out), nprocs=2)
        found = dict(out)
    assert len(found) == 12, found
    for key, value in found.items():
        assert value < 1e-5, (key, value)
