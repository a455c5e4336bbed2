"""Weight sync exactness through real Ray actors, vLLM (CPU) and DeepSpeed.

After a learner update and a sync, the engine's greedy output must equal the learner's own greedy
output token for token, for ZeRO stages 1 and 3 (the latter gathers sharded parameters), and for a
heterogeneous DeciLM child (rlplat's module in the learners, vLLM's DeciLMForCausalLM in the engine).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import ray
from ray.util.placement_group import remove_placement_group

from rlplat.algo.batching import split_for_ranks
from rlplat.config.schema import (
    ClusterConfig,
    Config,
    FaultsConfig,
    LearnerConfig,
    ModelConfig,
    RolloutConfig,
    SamplingConfig,
    SyncConfig,
    TimeoutsConfig,
)
from rlplat.distributed.cluster import create_placement_group
from rlplat.distributed.placement import cpu_binds, plan_placement
from rlplat.faults import FaultLog
from rlplat.learner.group import LearnerGroup
from rlplat.models.decilm import HeteroLlamaForCausalLM, load_decilm
from rlplat.models.hf import greedy_decode
from rlplat.rollout.group import RolloutGroup
from rlplat.rollout.worker import EngineSpec
from rlplat.runtime.stage_actors import learner_spec
from rlplat.runtime.weight_sync import WeightSync
from rlplat.sync.plan import plan_export
from rlplat.sync.transport import bucket_paths
from rlplat.types import BucketSpec, Generation, GenerationRequest, Sample, SyncManifest, TensorEntry, TrainSequence

pytestmark = pytest.mark.slow
PROMPTS = [[10, 11, 12, 13], [20, 21, 22], [30, 31, 32, 33, 34]]
TIMEOUTS = TimeoutsConfig(actor_start_s=300, generate_s=120, train_s=120, sync_s=120, checkpoint_s=120)


def _engines(model_path: str, count: int) -> tuple[RolloutGroup, object]:
    """``count`` CPU engines serving ``model_path``, sharing the machine's cores."""
    cfg = Config(cluster=ClusterConfig(devices_per_node=count), rollout=RolloutConfig(max_model_len=128))
    plan = plan_placement(cfg.cluster, cfg.rollout)
    pg = create_placement_group(plan, 60)
    group = RolloutGroup(EngineSpec(model_path, "float32", "cpu", cfg.rollout, seed=0), plan, pg,
                         cpu_binds(plan, os.cpu_count() or 1, count), timeouts=TIMEOUTS,
                         faults=FaultsConfig(max_rollout_restarts=2), fault_log=FaultLog()).wait_started()
    return group, pg


@pytest.fixture(scope="module")
def rollouts(ray_local: None, tiny_model: str) -> Iterator[RolloutGroup]:
    """Two CPU engines sharing the machine's cores."""
    group, pg = _engines(tiny_model, 2)
    yield group
    group.shutdown()
    remove_placement_group(pg)


def _learners(model_path: str, zero_stage: int, reference_model: bool = False,
              gradient_checkpointing: bool = False, ranks: int = 2) -> tuple[LearnerGroup, object]:
    """``ranks`` learner ranks on ``model_path``."""
    cfg = Config(learner=LearnerConfig(zero_stage=zero_stage, lr=0.05, warmup_steps=0,  # type: ignore[arg-type]
                                       reference_model=reference_model, micro_batch_size=4),
                 model=ModelConfig(gradient_checkpointing=gradient_checkpointing),
                 cluster=ClusterConfig(devices_per_node=ranks))
    plan = plan_placement(cfg.cluster, cfg.rollout)
    plan = replace(plan, engine_bundles=())
    pg = create_placement_group(plan, 60)
    return LearnerGroup(learner_spec(cfg, model_path, cfg.learner.lr), plan, pg, TIMEOUTS).wait_started(), pg


def _update_and_sync(learners: LearnerGroup, rollouts: RolloutGroup, tag: str,
                     sync: SyncConfig | None = None) -> list[list[int]]:
    """One large-lr training step, then a sync (``sync``: the default ``SyncConfig()`` when None);
    checks the versions and returns the engines' greedy tokens after it, which must equal the learners'."""
    seqs = [TrainSequence(tuple(p), tuple(range(40, 56)), tuple([-4.0] * 16), adv)
            for p in PROMPTS for adv in (1.0, -1.0)] + [TrainSequence((5, 6), (7, 8), (-4.0, -4.0), 1.0)] * 2
    learners.train_step(split_for_ranks(seqs, learners.world_size))
    start = ray.get(rollouts.workers[0].info.remote())["version"]
    restarts = rollouts.fault_log.rollout_restarts
    report = WeightSync(sync or SyncConfig(), learners, rollouts, tag=tag).sync(start + 1)
    assert rollouts.fault_log.rollout_restarts == restarts, "no engine may fail while loading"
    assert report.version == start + 1 and report.nbytes > 0 and report.shm_engines == len(rollouts.workers)
    assert [ray.get(w.info.remote())["version"] for w in rollouts.workers] == [report.version] * len(rollouts.workers)
    after_engine = rollouts.greedy(PROMPTS, 16)
    assert after_engine == learners.greedy(PROMPTS, 16)
    return after_engine


def _every_group(generation: Generation) -> list[list[Sample]]:
    """The samples of every request (a None group, a request whose engine failed, fails the test)."""
    groups = [g for g in generation.samples if g is not None]
    assert len(groups) == len(generation.samples), "a request got no samples"
    return groups


def test_generation_returns_tokens_logprobs_and_version(rollouts: RolloutGroup) -> None:
    reqs = [GenerationRequest(f"p{i}", tuple(p), seed=i) for i, p in enumerate(PROMPTS)]
    groups = _every_group(rollouts.generate(reqs, 3, SamplingConfig(max_new_tokens=12)))
    assert [len(g) for g in groups] == [3, 3, 3]
    for g in groups:
        for s in g:
            assert 0 < len(s.token_ids) <= 12 and len(s.logprobs) == len(s.token_ids)
            assert all(lp <= 0.0 for lp in s.logprobs) and s.weights_version == rollouts.infos[0]["version"]
    again = _every_group(rollouts.generate(reqs, 3, SamplingConfig(max_new_tokens=12)))
    assert [s.token_ids for g in again for s in g] == [s.token_ids for g in groups for s in g], \
        "per-request seeds must make sampling reproducible"


# ZeRO-1 streamed in 1 MB buckets (the engines load the first buckets while the learner writes the
# next), ZeRO-3 with the engines waiting for the whole export.
@pytest.mark.parametrize(("zero_stage", "sync"), [(1, SyncConfig(bucket_mb=1)), (3, SyncConfig(stream=False))])
def test_synced_engine_matches_learner_greedy(rollouts: RolloutGroup, tiny_model: str, zero_stage: int,
                                              sync: SyncConfig) -> None:
    learners, pg = _learners(tiny_model, zero_stage)
    try:
        plan = plan_export(sync, learners.node_ids(), rollouts.node_ids(), 1, "layout")
        assert len(learners.export_layout(plan)) == (4 if sync.stream else 1)
        before = learners.greedy(PROMPTS, 16)  # the learner's own outputs before the update
        after = _update_and_sync(learners, rollouts, f"test{zero_stage}", sync)
        assert after != before, "the update should change greedy outputs (lr is large)"
    finally:
        learners.shutdown()
        remove_placement_group(pg)


def test_decilm_child_trains_and_syncs_exactly(ray_local: None, decilm_child: tuple[Path, HeteroLlamaForCausalLM]) -> None:
    """A heterogeneous child (no-attention, no-FFN and GQA blocks): vLLM's DeciLM engine and rlplat's
    module in ZeRO-3 learners (built partitioned, with a reference and gradient checkpointing) agree before and after
    a training step and a sync (greedy tokens, and the log-probs of sampled ones); the learners save it
    back as DeciLM; an FP8 sync loads."""
    path, module = decilm_child
    # One engine and one learner rank: with the module's two engines they fill the session's 8 CPUs.
    rollouts, engine_pg = _engines(str(path), 1)
    try:
        # ZeRO-3: the child is built partitioned and read in tensor by tensor (rlplat.learner.zero3).
        learners, pg = _learners(str(path), 3, reference_model=True, gradient_checkpointing=True, ranks=1)
    except BaseException:
        rollouts.shutdown()
        remove_placement_group(engine_pg)
        raise
    try:
        before = rollouts.greedy(PROMPTS, 16)
        assert before == learners.greedy(PROMPTS, 16) == [greedy_decode(module, p, 16) for p in PROMPTS]
        _sampled_logprobs_are_the_module_s(rollouts, module)
        after = _update_and_sync(learners, rollouts, "decilm")
        assert after != before, "the update should change greedy outputs (lr is large)"
        out = path.parent / "saved"
        learners.save_hf(str(out))
        saved = load_decilm(out)
        assert saved.config == module.config
        assert [greedy_decode(saved, p, 16) for p in PROMPTS] == after
        # FP8 weights for the child's engine: the blocks' own projections, its missing ones skipped.
        fp8 = WeightSync(SyncConfig(), learners, rollouts, tag="decilm8", fp8=True).sync(3)
        assert 0 < fp8.nbytes and len(rollouts.greedy(PROMPTS, 4)[0]) == 4
    finally:
        learners.shutdown()
        remove_placement_group(pg)
        rollouts.shutdown()
        remove_placement_group(engine_pg)


def _sampled_logprobs_are_the_module_s(rollouts: RolloutGroup, module: HeteroLlamaForCausalLM) -> None:
    """vLLM's DeciLM engine gives every token it samples the log-probability rlplat's module gives it."""
    import torch

    reqs = [GenerationRequest(f"d{i}", tuple(p), seed=i) for i, p in enumerate(PROMPTS)]
    for req, [sample] in zip(reqs, _every_group(rollouts.generate(reqs, 1, SamplingConfig(max_new_tokens=8))),
                             strict=True):
        ids, start = [*req.prompt_token_ids, *sample.token_ids], len(req.prompt_token_ids)
        with torch.no_grad():
            logits = module(torch.tensor([ids])).logits[0, start - 1:-1].double()
        ours = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(sample.token_ids)[:, None])[:, 0]
        assert torch.allclose(ours, torch.tensor(sample.logprobs, dtype=torch.float64), atol=1e-3)


def test_an_abandoned_streamed_load_stops_at_the_abort_marker(ray_local: None, tiny_model: str,
                                                             tmp_path: Path) -> None:
    """A streamed load waiting for bucket files that never come (the export failed) ends with
    ``SyncAborted`` once ``abandon_load`` has each engine write the abort marker on its node."""
    engines, pg = _engines(tiny_model, 1)
    try:
        specs = (BucketSpec((TensorEntry("model.embed_tokens.weight", "float32", (4,), 0, 16),), 64),)
        manifest = SyncManifest(1, specs, bucket_paths(str(tmp_path), "never", 1, 1),
                                frozenset(engines.node_ids()), stream_wait_s=600)
        loading = engines.start_load(manifest)
        assert ray.wait([c.ref for c in loading], timeout=2)[0] == [], "the load must wait for its file"
        engines.abandon_load(manifest, loading)
        with pytest.raises(ray.exceptions.RayTaskError, match="abort marker"):
            ray.get(loading[0].ref, timeout=0)
    finally:
        engines.shutdown()
        remove_placement_group(pg)


def _listening(pids: set[int]) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket in LISTEN state owned by ``pids``."""
    import psutil

    out = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            out.append((conn.laddr.ip, conn.laddr.port, psutil.Process(conn.pid).name()))
    return out


def _is_loopback(ip: str) -> bool:
    import ipaddress

    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def test_a_local_run_listens_on_loopback_only(rollouts: RolloutGroup, tiny_model: str) -> None:
    """Ray's services, the engines and the learners' rendezvous of a local run (this session's Ray,
    started by ``start_ray`` as the launcher does) accept no connection from outside the machine."""
    import psutil

    learners, pg = _learners(tiny_model, 1)
    try:
        learners.train_step(split_for_ranks([TrainSequence((5, 6), (7, 8), (-4.0, -4.0), 1.0)] * 2,
                                            learners.world_size))
        me = psutil.Process(os.getpid())
        pids = {me.pid, *(p.pid for p in me.children(recursive=True))}
        sockets = _listening(pids)
        assert any("raylet" in name or "gcs" in name for _, _, name in sockets), sockets  # Ray's own are seen
        outside = [s for s in sockets if not _is_loopback(s[0])]
        assert not outside, f"listening beyond loopback: {outside}"
    finally:
        learners.shutdown()
        remove_placement_group(pg)
