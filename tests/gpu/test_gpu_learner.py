"""A learner rank on CUDA in bf16: the GRPO step with torch's fused AdamW, then offload and reload.

Two levels. Without DeepSpeed: rlplat's GRPO loss (``rlplat.algo``) forward and backward through a
Llama on CUDA and one step of the AdamW that ``rlplat.learner.ds_config`` configures for a GPU
learner (torch's fused CUDA kernel), in this process. With DeepSpeed: rlplat's own rank,
``LearnerWorker`` (built without Ray, its ``node_id`` given), for each ZeRO stage in a spawned
process of its own as in production (one rank, one process, one NCCL group): ``setup`` builds the
engine from ``build_ds_config``; ``train_step`` takes a GRPO step; ``offload`` (what a co-located
run calls while its engines generate, ``learner.offload_states``) must free on the device most of
the bytes of parameters, fp32 master weights, Adam state and reference model, as
``torch.cuda.mem_get_info`` sees it; ``reload`` must bring back every parameter and optimizer
value bit for bit, and a second ``train_step`` must work after it.
"""

from __future__ import annotations

import importlib.util
import math
import os
import socket
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pytest
import torch

from rlplat.algo import grpo_loss, token_logprobs
from rlplat.algo.microbatches import MicroBatching, collate_micro_batch
from rlplat.config.schema import GRPOConfig, LearnerConfig
from rlplat.learner.ds_config import build_ds_config
from rlplat.models.hf import load_causal_lm
from rlplat.models.tiny import SPECIAL_TOKENS, char_vocab
from rlplat.types import RankStepStats, TrainSequence, TrainShard
from spawned import in_spawned_process

pytestmark = pytest.mark.gpu

ZeroStage = Literal[0, 1, 2, 3]

# Large enough that Adam's first step (about lr per weight) shows in bf16 weights of magnitude ~0.02.
LR = 1e-3
# No warm-up: DeepSpeed's WarmupLR starts from 0, and the first step must move the weights.
LEARNER = LearnerConfig(lr=LR, warmup_steps=0, micro_batch_size=4, reference_model=True)
# Share of the moved bytes that must show as free device memory after ``offload``: the allocator
# returns whole segments, and gradient buffers and caches move too, so the rest is slack, not loss.
FREED_SHARE = 0.8
RANK_TIMEOUT_S = 300.0

# DeepSpeed's own limits, as read in DeepSpeed 0.19.8's source (not yet seen on a GPU), which is why
# rlplat refuses these learners' offload before the launch (``rlplat.config.validate``, ``_check_offload``;
# ZeRO-3 runs need learner.offload_optimizer=true): each is an expected failure only when ``offload``
# raises this very error; any other outcome is judged in full.
OFFLOAD_LIMITS = {
    0: ("offload_states", "ZeRO stage 0 in bf16: DeepSpeed wraps the optimizer in FP16_UnfusedOptimizer, "
                          "which has no offload_states (only the ZeRO-1/2 and ZeRO-3 optimizers do)"),
    3: ("FusedAdam", "ZeRO-3: DeepSpeed's offload_states asserts that the optimizer is its own FusedAdam, "
                     "and rlplat's GPU learners use torch's fused AdamW (ds_config._adam_kind)"),
}


def _sequences(seed: int) -> tuple[TrainSequence, ...]:
    """Eight prompt + completion pairs over the character vocabulary, of different lengths (two
    micro-batches of ``LEARNER.micro_batch_size``, padded), advantages of both signs. The rollout
    log-probs are the uniform policy's: a random Llama is close to it."""
    gen = torch.Generator().manual_seed(seed)
    first, vocab = len(SPECIAL_TOKENS), len(char_vocab())
    out = []
    for i in range(8):
        p, c = 8 + 2 * i, 16 + 4 * i
        ids = torch.randint(first, vocab, (p + c,), generator=gen).tolist()
        out.append(TrainSequence(tuple(ids[:p]), tuple(ids[p:]), (-math.log(vocab),) * c, 1.0 if i % 2 else -1.0))
    return tuple(out)


def _shard(seed: int) -> TrainShard:
    """One rank's whole optimizer step (world size 1), on policy: the learner's own forward pass
    gives the old log-probs (``grpo.old_logprobs=learner``), so the PPO ratio starts at exactly 1."""
    seqs = _sequences(seed)
    return TrainShard(seqs, sum(len(s.completion_ids) for s in seqs), len(seqs), on_policy=True)


def test_grpo_loss_and_a_fused_adamw_step_in_bf16_on_cuda(gpu_model: str) -> None:
    """No DeepSpeed: the loss the learners differentiate, on CUDA in bf16, and one step of the
    optimizer a GPU learner's DeepSpeed config asks for (torch's fused AdamW) change the weights."""
    params = dict(build_ds_config(LEARNER, LR, 1, "gpu", "bfloat16")["optimizer"]["params"])
    assert params.pop("torch_adam") is True and params["fused"] is True  # what DeepSpeed builds on GPU
    model = load_causal_lm(gpu_model, torch.bfloat16).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), **params)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    shard = _shard(seed=0)
    pad = model.config.pad_token_id or 0
    for group in (shard.sequences[:4], shard.sequences[4:]):  # two micro-batches, one optimizer step
        mb = collate_micro_batch(group, MicroBatching(4), pad).to(torch.device("cuda"))
        logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False).logits[:, :-1]
        assert logits.dtype == torch.bfloat16
        logprobs = mb.per_sequence(token_logprobs(logits, mb.input_ids[:, 1:]))
        loss, stats = grpo_loss(logprobs, logprobs.detach(), mb.advantages, mb.loss_mask,
                                num_tokens=float(shard.num_tokens), num_seqs=float(shard.num_seqs))
        assert torch.isfinite(loss) and stats["ratio/mean"] == pytest.approx(1.0)
        loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    optimizer.step()
    assert optimizer.param_groups[0]["fused"] is True
    after = dict(model.named_parameters())
    unchanged = [n for n, p in after.items() if n.endswith("proj.weight") and torch.equal(p, before[n])]
    assert not unchanged, f"linear weights the step left as they were: {unchanged}"
    assert not torch.equal(after["lm_head.weight"], before["lm_head.weight"])


# --------------------------------------------------------------------------------------- DeepSpeed


@dataclass(frozen=True)
class RankReport:
    """What a learner rank measured in its own process, in plain values for the parent to judge.

    ``skip``: why nothing ran (DeepSpeed missing); ``offload_error``: what ``offload`` raised (the
    rest is then unset). Any other failure fails the test with the rank's traceback.
    """

    skip: str | None = None
    optimizer: str = ""
    fused: bool = False
    first_step: dict[str, float] = field(default_factory=dict)
    first_grad_norm: float = math.nan
    unchanged_after_step: list[str] = field(default_factory=list)
    linear_weights: int = 0
    ipc_export_ok: bool = False
    offload_error: str | None = None
    moved_bytes: int = 0
    freed_bytes: int = 0
    retaken_bytes: int = 0
    params_differing_after_reload: list[str] = field(default_factory=list)
    optimizer_values_differing_after_reload: int = 0
    second_step: dict[str, float] = field(default_factory=dict)
    unchanged_after_second_step: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Host copies of this rank's parameters as the engine holds them: the whole tensors below
    ZeRO-3, this rank's partitions (``ds_tensor``; everything at world size 1) at ZeRO-3."""
    return {n: getattr(p, "ds_tensor", p.data).detach().to("cpu", copy=True) for n, p in module.named_parameters()}


def _optimizer_values(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Host copies of the optimizer's fp32 master weights and every tensor of its state, in order."""
    values = [p.detach().to("cpu", copy=True) for g in optimizer.param_groups for p in g["params"]]
    for state in optimizer.state.values():
        values += [v.detach().to("cpu", copy=True) for v in state.values() if isinstance(v, torch.Tensor)]
    return values


def _cuda_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor) and t.is_cuda)


def _moved_bytes(worker: Any, optimizer: torch.optim.Optimizer) -> int:
    """The device bytes ``offload`` is documented to move: parameters, fp32 master weights and Adam
    state (DeepSpeed's state offload) and the reference model."""
    module = worker.engine.module
    total = _cuda_bytes(getattr(p, "ds_tensor", p.data) for p in module.parameters())
    total += _cuda_bytes(p for g in optimizer.param_groups for p in g["params"])
    total += _cuda_bytes(v for s in optimizer.state.values() for v in s.values())
    if isinstance(worker.ref, torch.nn.Module):  # a ZeRO-3 reference holds empty placeholders: 0 here
        total += _cuda_bytes(worker.ref.parameters())
    return total


def _unchanged_linear(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [n for n in before if n.endswith("proj.weight") and torch.equal(before[n], after[n])]


def _step_values(stats: RankStepStats) -> dict[str, float]:
    """The first micro-batch's statistics of a ``RankStepStats``, plus the finiteness of them all."""
    values = dict(stats.micro[0].values)
    values["all_finite"] = float(all(math.isfinite(v) for m in stats.micro for v in m.values.values()))
    return values


def _learner_checks(model: str, zero_stage: ZeroStage, port: int) -> RankReport:
    """Build one rank, train, offload, reload, train again; measure each."""
    # tests/conftest.py sets DS_ACCELERATOR=cpu for the CPU suite; a GPU rank's actor gets cuda
    # (rlplat/distributed/cluster.py), and this process stands in for one.
    os.environ["DS_ACCELERATOR"] = "cuda"
    try:
        import deepspeed  # noqa: F401 - only whether it imports
    except ImportError as err:
        return RankReport(skip=f"DeepSpeed is not installed here ({err}): the learner's engine needs it")
    from rlplat.learner.worker import LearnerSpec, LearnerWorker

    spec = LearnerSpec(model_path=model, dtype="bfloat16", device="gpu", learner=replace(LEARNER, zero_stage=zero_stage),
                       grpo=GRPOConfig(), temperature=1.0, max_response_tokens=64, lr=LR, world_size=1,
                       master_addr="127.0.0.1", master_port=port, seed=0, collective_timeout_s=120.0,
                       old_logprobs="learner")
    worker = LearnerWorker(spec, rank=0, node_id="gpu-checks")
    worker.setup()
    module = worker.engine.module
    optimizer = getattr(worker.engine.optimizer, "optimizer", worker.engine.optimizer)
    report = RankReport(optimizer=f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
                        fused=bool(optimizer.param_groups[0].get("fused")))
    start = _weights(module)
    stats = worker.train_step(_shard(seed=0))
    trained = _weights(module)
    report = replace(report, first_step=_step_values(stats), first_grad_norm=stats.grad_norm,
                     unchanged_after_step=_unchanged_linear(start, trained),
                     linear_weights=sum(n.endswith("proj.weight") for n in start))
    # A CUDA IPC sync's export (``sync.backend=ipc``): every parameter, full size (ZeRO-3: gathered
    # copies), each with a handle on this GPU; released before the memory is measured.
    export = worker.export_ipc()
    uuid = str(torch.cuda.get_device_properties(0).uuid)
    full = [tuple(getattr(p, "ds_shape", p.shape)) for _, p in module.named_parameters()]
    report = replace(report, ipc_export_ok=list(export.names) == list(start) and list(export.shapes) == full
                     and all(set(h) == {uuid} for h in export.handles))
    worker.release_ipc()
    # What the engines would find: the device as the learner leaves it, its cache emptied first so
    # that only what ``offload`` releases counts.
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    moved, optimizer_before = _moved_bytes(worker, optimizer), _optimizer_values(optimizer)
    free_before = torch.cuda.mem_get_info()[0]
    try:
        worker.offload()
    except Exception as err:  # noqa: BLE001 - the parent judges it (OFFLOAD_LIMITS)
        return replace(report, offload_error=f"{type(err).__name__}: {err}")
    free_offloaded = torch.cuda.mem_get_info()[0]
    worker.reload()
    free_reloaded = torch.cuda.mem_get_info()[0]
    back, optimizer_back = _weights(module), _optimizer_values(optimizer)
    differing = sum(not torch.equal(a, b) for a, b in zip(optimizer_before, optimizer_back))
    differing += abs(len(optimizer_before) - len(optimizer_back))
    second = worker.train_step(_shard(seed=1))
    report = replace(report, moved_bytes=moved, freed_bytes=free_offloaded - free_before,
                     retaken_bytes=free_offloaded - free_reloaded,
                     params_differing_after_reload=[n for n in trained if not torch.equal(trained[n], back[n])],
                     optimizer_values_differing_after_reload=differing, second_step=_step_values(second),
                     unchanged_after_second_step=_unchanged_linear(back, _weights(module)))
    torch.distributed.destroy_process_group()
    return report


def _run_rank(model: str, zero_stage: ZeroStage) -> RankReport:
    """``_learner_checks`` in a fresh spawned interpreter (a rank owns its process and its NCCL
    group, and device memory is then measured with nothing of another rank in it)."""
    return in_spawned_process(_learner_checks, model, zero_stage, _free_port(),
                              what=f"the ZeRO-{zero_stage} learner rank", timeout_s=RANK_TIMEOUT_S)


@pytest.fixture(scope="module", params=[0, 1, 2, 3], ids=lambda s: f"zero{s}")
def rank(request: pytest.FixtureRequest, gpu_model: str) -> tuple[int, RankReport]:
    """One learner rank's report per ZeRO stage (computed once, judged by the tests below)."""
    zero_stage: ZeroStage = request.param
    if importlib.util.find_spec("deepspeed") is None:  # spare the spawn; a broken install fails in the rank
        pytest.skip("DeepSpeed is not installed here: the learner's engine needs it")
    report = _run_rank(gpu_model, zero_stage)
    if report.skip:
        pytest.skip(report.skip)
    return zero_stage, report


def test_learner_step_through_deepspeed_with_fused_adamw(rank: tuple[int, RankReport]) -> None:
    """``LearnerWorker.train_step`` on CUDA in bf16: finite loss statistics and gradient norm, every
    linear weight moved, and the optimizer DeepSpeed built from rlplat's config is torch's fused AdamW."""
    _, r = rank
    assert r.optimizer == "torch.optim.adamw.AdamW" and r.fused, r.optimizer
    assert r.first_step["all_finite"] == 1.0, r.first_step
    assert math.isfinite(r.first_grad_norm) and r.first_grad_norm > 0.0, r.first_grad_norm
    assert r.linear_weights > 0 and not r.unchanged_after_step, r.unchanged_after_step
    assert r.ipc_export_ok, "export_ipc did not hand out every full parameter with a handle on this GPU"


def test_offload_frees_the_device_and_reload_restores_every_value(rank: tuple[int, RankReport]) -> None:
    """``offload`` frees at least ``FREED_SHARE`` of the bytes it moves (``mem_get_info``); after
    ``reload`` every parameter and optimizer value is what it was, and the next step trains."""
    zero_stage, r = rank
    if r.offload_error is not None:
        expected = OFFLOAD_LIMITS.get(zero_stage)
        if expected is not None and expected[0] in r.offload_error:
            pytest.xfail(f"{expected[1]}: {r.offload_error}")
        pytest.fail(f"ZeRO-{zero_stage}: offload failed: {r.offload_error}")
    gib = 2.0**30
    assert r.moved_bytes > 0.5 * gib, f"too little state to measure: {r.moved_bytes / gib:.2f} GiB"
    assert r.freed_bytes >= FREED_SHARE * r.moved_bytes, (
        f"offload freed {r.freed_bytes / gib:.3f} GiB of the {r.moved_bytes / gib:.3f} GiB it moves")
    assert r.retaken_bytes > 0, "reload took no device memory back"
    assert not r.params_differing_after_reload, r.params_differing_after_reload
    assert r.optimizer_values_differing_after_reload == 0
    assert r.second_step["all_finite"] == 1.0, r.second_step
    assert not r.unchanged_after_second_step, r.unchanged_after_second_step
