"""LearnerWorker: one rank of a DeepSpeed data-parallel group, as a Ray actor.

Each rank holds a DeepSpeed engine (ZeRO stage from config; gloo on CPU, nccl on GPU) around a
causal LM (a transformers model, or rlplat's heterogeneous DeciLM module: ``rlplat.models.hf``),
and optionally a frozen reference copy for the KL term. The driver calls every rank with its shard
of each optimizer step; all ranks must take part in every collective call (``train_step``,
``sft_step``, ``distill_step``, ``export_weights``, ``save``/``load``).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import torch

from rlplat.algo import entropy_from_logits, grpo_loss, kl_k3, masked_mean, token_logprobs
from rlplat.algo.batching import MicroBatch
from rlplat.algo.distill import TeacherBatch, forward_kl, hidden_cosine, token_cross_entropy
from rlplat.algo.microbatches import MicroBatching, collate_micro_batch, micro_batches, plan_micro_batches
from rlplat.algo.mismatch import mismatch_weights
from rlplat.config.schema import DistillConfig, GRPOConfig, LearnerConfig
from rlplat.faults import ArmedFaults, FaultKind
from rlplat.learner import ulysses
from rlplat.learner.zero3 import gathered_state_dict, host_memory, load_sharded, prepare_sharded
from rlplat.models.hf import greedy_decode, import_model_code, load_causal_lm, save_causal_lm
from rlplat.sync.buckets import pack, plan_buckets
from rlplat.sync.fp8 import SCALE_SUFFIX, export_metas, fused_group, quantized_items
from rlplat.sync.ipc import IpcExport, export_ipc
from rlplat.sync.transport import bucket_paths, pack_to_file, remove_files
from rlplat.types import BucketSpec, ExportPlan, MicroStats, RankStepStats, SyncManifest, TrainSequence, TrainShard


@dataclass(frozen=True)
class LearnerSpec:
    """What every rank needs to build its engine."""

    model_path: str
    dtype: str
    device: str
    learner: LearnerConfig
    grpo: GRPOConfig
    temperature: float
    # Longest completion the engines can produce (rollout.sampling.max_new_tokens): the constant
    # length normaliser of Dr. GRPO's ``seq_mean_token_sum`` aggregation.
    max_response_tokens: int
    lr: float
    world_size: int
    master_addr: str
    master_port: int
    seed: int
    collective_timeout_s: float
    gradient_checkpointing: bool = False
    # The PPO ratio's old log-probs (``grpo.old_logprobs`` resolved: never None here).
    old_logprobs: str = "rollout"


class LearnerWorker:
    """One DeepSpeed rank; created as a Ray actor by ``LearnerGroup``."""

    def __init__(self, spec: LearnerSpec, rank: int, node_id: str | None = None) -> None:
        """``node_id``: the Ray node this rank runs on; None (a Ray actor, as ``LearnerGroup`` builds
        it) asks Ray. A rank built outside Ray names its own (tests/gpu: the GPU checks run where
        Ray is not installed)."""
        if node_id is None:
            import ray

            node_id = ray.get_runtime_context().get_node_id()
        self.spec = spec
        self.rank = rank
        self.node_id = node_id
        self._written: tuple[str, ...] = ()
        # The tensors behind this rank's last CUDA IPC export (``export_ipc``), kept alive for the engines.
        self._ipc_held: list[tuple[str, torch.Tensor]] = []
        self.faults = ArmedFaults(f"learner rank {rank}")
        if spec.device == "cpu":
            os.environ["DS_ACCELERATOR"] = "cpu"
            # Nothing a CPU learner runs is compiled, yet DeepSpeed's import decorates functions
            # with torch.compile, which loads TorchDynamo (about 1 s of each learner's start).
            os.environ["TORCHDYNAMO_DISABLE"] = "1"
            torch.set_num_threads(spec.learner.cpu_threads)
        os.environ.update({
            "MASTER_ADDR": spec.master_addr, "MASTER_PORT": str(spec.master_port),
            "RANK": str(rank), "WORLD_SIZE": str(spec.world_size),
            # Ray narrows CUDA_VISIBLE_DEVICES to this actor's GPU, so it is always device 0.
            "LOCAL_RANK": "0",
        })
        if spec.master_addr.startswith("127."):
            # A local run: gloo's own sockets stay on loopback too (it picks an interface by itself).
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

    def setup(self) -> dict[str, Any]:
        """Join the process group and build the engine; returns node id and pid."""
        import deepspeed

        from rlplat.learner.ds_config import build_ds_config

        backend = "gloo" if self.spec.device == "cpu" else "nccl"
        timeout = timedelta(seconds=self.spec.collective_timeout_s)
        _clear_stale_build_lock("deepspeed_shm_comm")
        torch.distributed.init_process_group(backend, store=self._rendezvous_store(timeout), rank=self.rank,
                                             world_size=self.spec.world_size, timeout=timeout)
        # DeepSpeed adopts the process group that exists (it initialises one only when none does).
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, timeout=timeout)
        # This rank's sequence-parallel group (``learner.sequence_parallel`` ranks; None: 1).
        n = self.spec.learner.sequence_parallel
        self.sp: ulysses.SequenceGroup | None = ulysses.sequence_groups(self.spec.world_size, n, self.rank) if n > 1 else None
        torch.manual_seed(self.spec.seed)
        dtype = getattr(torch, self.spec.dtype)
        ds_cfg = build_ds_config(self.spec.learner, self.spec.lr, self.spec.world_size,
                                 self.spec.device, self.spec.dtype)
        # Imports outside the window measured below: the model's code, and a sharded start's own.
        import_model_code(self.spec.model_path)
        if self._sharded:
            prepare_sharded()
        before = host_memory(reset_peak=True)
        model = self._load(dtype, ds_cfg)
        if self.spec.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.pad_id = model.config.pad_token_id or 0
        self.ref = self._load_reference(dtype, ds_cfg) if self.spec.learner.reference_model else None
        loaded = host_memory()
        self.engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                               config=ds_cfg)
        # What loading the models cost this rank's host at its peak, and the peak of the whole
        # start-up (DeepSpeed's own buffers included); ``sharded``: built sharded.
        self.load_memory = {"load_peak_bytes": loaded["peak"] - before["current"],
                            "setup_peak_bytes": max(before["peak"], host_memory()["peak"]),
                            "sharded": float(self._sharded)}
        return {"node_id": self.node_id, "pid": os.getpid(), "rank": self.rank}

    @property
    def _sharded(self) -> bool:
        """Whether the models are built already partitioned (ZeRO-3 with ``learner.sharded_init``)."""
        return self.spec.learner.zero_stage == 3 and self.spec.learner.sharded_init

    def _load(self, dtype: torch.dtype, ds_cfg: dict[str, Any]) -> Any:
        """The model of ``model_path``: partitioned from its creation on (``rlplat.learner.zero3``),
        or whole on this rank until DeepSpeed shards it; with Ulysses attention under sequence parallelism."""
        if self._sharded:
            model = load_sharded(self.spec.model_path, dtype, ds_cfg, self.rank)
        else:
            model = load_causal_lm(self.spec.model_path, dtype)
        if self.sp is not None:
            ulysses.install(model, self.sp)
        return model

    def _rendezvous_store(self, timeout: timedelta) -> Any:
        """The torch.distributed store, served by rank 0 on ``master_addr`` only.

        torch's own store server listens on every interface; handing it a socket bound to the
        rendezvous address keeps a local run's rendezvous on loopback (and a cluster's on the node's
        cluster interface).
        """
        import socket

        from torch.distributed import TCPStore

        addr, port, world = self.spec.master_addr, self.spec.master_port, self.spec.world_size
        if self.rank != 0:
            return TCPStore(addr, port, world, is_master=False, timeout=timeout)
        self._store_socket = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
        self._store_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._store_socket.bind((addr, port))
        self._store_socket.listen(max(world, 128))
        return TCPStore(addr, port, world, is_master=True, timeout=timeout,
                        master_listen_fd=self._store_socket.fileno(), use_libuv=True)

    def _load_reference(self, dtype: torch.dtype, ds_cfg: dict[str, Any]) -> Any:
        """Frozen copy of the initial policy; sharded by a ZeRO-3 inference engine when the policy
        is (a whole copy per rank would not fit at scale)."""
        import deepspeed

        ref = self._load(dtype, ds_cfg)
        ref.requires_grad_(False)
        if self.spec.learner.zero_stage < 3:
            return ref.eval().to(self._device())
        config = {"train_micro_batch_size_per_gpu": self.spec.learner.micro_batch_size,
                  "zero_optimization": {"stage": 3}, "bf16": {"enabled": self.spec.dtype == "bfloat16"}}
        engine, *_ = deepspeed.initialize(model=ref, config=config)
        engine.eval()
        return engine

    # ----------------------------------------------------------------------------- device memory

    def offload(self) -> float:
        """Hand the device back while co-located engines generate: parameters, gradients and
        optimizer state (DeepSpeed's state offload) and the reference model move to pinned host
        memory and the CUDA cache is emptied; returns the seconds. A CPU learner's state already
        lives in host memory: nothing moves (0.0)."""
        if self.spec.device == "cpu":
            return 0.0
        start = time.perf_counter()
        self.engine.offload_states(pin_memory=True)
        self._move_reference("cpu")
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        return time.perf_counter() - start

    def reload(self) -> float:
        """Undo ``offload`` before training; returns the seconds (0.0 on CPU)."""
        if self.spec.device == "cpu":
            return 0.0
        start = time.perf_counter()
        self.engine.reload_states()
        self._move_reference("cuda")
        torch.cuda.synchronize()
        return time.perf_counter() - start

    def _move_reference(self, device: str) -> None:
        """The reference model to ``device``. A ZeRO-3 reference is an inference engine holding only
        its shard (no optimizer state to offload): it stays."""
        # A DeepSpeed engine is an nn.Module too: ask how the reference was built, not its type
        # (``.to`` on a ZeRO-3 engine would move its partitions behind DeepSpeed's back).
        if self.ref is not None and self.spec.learner.zero_stage < 3:
            self.ref.to(device, non_blocking=device == "cpu")

    def _device(self) -> torch.device:
        return torch.device("cpu") if self.spec.device == "cpu" else torch.device("cuda")

    def info(self) -> dict[str, Any]:
        """Node id, pid and rank (placement checks, fault injection)."""
        return {"node_id": self.node_id, "pid": os.getpid(), "rank": self.rank}

    # ----------------------------------------------------------------------------- training

    def arm_fault(self, phase: str, kind: FaultKind) -> None:
        """Testing aid (``faults.inject``): fail with ``kind`` at the start of the next ``phase`` call."""
        self.faults.arm(phase, kind)

    def train_step(self, shard: TrainShard) -> RankStepStats:
        """One GRPO optimizer step over this rank's shard; returns each micro-batch's statistics
        (reduced with every other rank's by ``rlplat.algo.stats``)."""
        self.faults.fire("train")
        start = time.perf_counter()
        self.engine.train()
        batches = self._micro_batches(shard.sequences, self._grpo_batching())
        micro = []
        for i, (group, mb) in enumerate(batches):
            self.engine.set_gradient_accumulation_boundary(i == len(batches) - 1)
            values = self._grpo_micro_step(mb.to(self._device()), shard)
            micro.append(MicroStats({**values, **_position_counts(shard, group, mb)}, mb.num_sequences))
        backward_done = time.perf_counter()
        self.engine.step()
        seconds = {"forward_backward": backward_done - start, "optimizer": time.perf_counter() - backward_done}
        return RankStepStats(tuple(micro), float(self.engine.get_global_grad_norm() or 0.0), seconds)

    @torch.no_grad()
    def old_logprobs(self, shard: TrainShard) -> TrainShard:
        """``shard`` with every sequence's ``learner_logprobs``: the log-probs of its completion
        under the weights held now (decoupled PPO's old policy). All ranks call it together."""
        self.engine.eval()
        out = list(shard.sequences)
        for group, mb in self._micro_batches(shard.sequences, self._grpo_batching()):
            mb = mb.to(self._device())
            lp = self._logprobs(self.engine, mb, self.spec.temperature)[0].float().cpu()
            for row, i in enumerate(group):
                seq, start = out[i], len(out[i].prompt_ids) - 1
                out[i] = replace(seq, learner_logprobs=tuple(lp[row, start:start + len(seq.completion_ids)].tolist()))
        return replace(shard, sequences=tuple(out))

    def _grpo_micro_step(self, mb: MicroBatch, shard: TrainShard) -> dict[str, float]:
        g, temperature = self.spec.grpo, self.spec.temperature
        logprobs, entropy = self._logprobs(self.engine, mb, temperature, entropy=True)
        ref_lp = self._ref_logprobs(mb) if self.ref is not None else None
        # The learner's old log-probs: recomputed by the driver's request, or, while the learners
        # still hold the weights that generated the samples, this very forward pass.
        learner_old = mb.learner_logprobs if mb.learner_logprobs is not None else (
            logprobs.detach() if shard.on_policy else None)
        weights, mismatch = None, dict[str, torch.Tensor]()
        if learner_old is not None and g.mismatch.mode != "off":
            weights, mismatch = mismatch_weights(learner_old, mb.old_logprobs, mb.loss_mask, g.mismatch)
        old = mb.old_logprobs
        if self.spec.old_logprobs == "learner":
            if learner_old is None:
                raise RuntimeError("grpo.old_logprobs=learner needs the learner's old log-probs on every "
                                   "optimizer step after the first (LearnerGroup.old_logprobs)")
            old = learner_old
        loss, stats = grpo_loss(
            logprobs, old, mb.advantages, mb.loss_mask,
            token_weights=weights if g.mismatch.needs_learner_logprobs else None,
            clip_low=g.clip_low, clip_high=g.clip_high, agg_mode=g.loss_agg,
            ref_logprobs=ref_lp, kl_coef=g.kl_coef,
            num_tokens=float(shard.num_tokens), num_seqs=float(shard.num_seqs),
            # Dr. GRPO divides by a constant of the run, never by this micro-batch's padded length:
            # otherwise short sequences weigh more and micro-batch shares stop adding up.
            seq_len_norm=float(self.spec.max_response_tokens) if g.loss_agg == "seq_mean_token_sum" else None,
        )
        # DeepSpeed averages gradients over ranks; the loss is already normalised by the global
        # batch, so undo the average (see rlplat.algo.aggregate).
        self.engine.backward(loss * self.spec.world_size, scale_wrt_gas=False)
        if ref_lp is None:
            # Without a reference model, ``kl`` reports the drift between the rollout policy and
            # the learner (k3 of old vs new logprobs), so the key is always meaningful.
            stats["kl"] = float(masked_mean(kl_k3(logprobs.detach(), mb.old_logprobs), mb.loss_mask))
        stats.update({k: float(v) for k, v in mismatch.items()})
        # The entropy of the distribution the rollout sampled from (logits / temperature).
        stats["entropy"] = float(masked_mean(entropy, mb.loss_mask))
        return stats

    def _grpo_batching(self) -> MicroBatching:
        learner = self.spec.learner
        return MicroBatching(learner.micro_batch_size, learner.max_tokens_per_micro_batch, learner.pack_tokens)

    def _micro_batches(self, seqs: tuple[TrainSequence, ...],
                       rule: MicroBatching) -> list[tuple[list[int], MicroBatch]]:
        """This rank's micro-batches and the indices in ``seqs`` of each one's sequences. With a token budget the ranks'
        counts may differ, so every rank makes as many as the rank that needs most (one tiny
        all-reduce): collectives inside the forward and backward passes (ZeRO-2 gradient
        reduction, ZeRO-3 gathers) need every rank to run the same number of them."""
        lengths = [len(s.prompt_ids) + len(s.completion_ids) for s in seqs]
        groups = plan_micro_batches(lengths, rule)
        if rule.max_tokens is not None and self.spec.world_size > 1:
            count = torch.tensor([len(groups)], device=self._device())
            torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
            groups = plan_micro_batches(lengths, rule, int(count.item()))
        return [(g, collate_micro_batch([seqs[i] for i in g], rule, self.pad_id)) for g in groups]

    def _logprobs(self, model: Any, mb: MicroBatch, temperature: float = 1.0,
                  entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-probs of ``mb``'s targets at ``temperature``, in the per-sequence layout
        (``MicroBatch.per_sequence``), and with ``entropy`` the entropy at each target (detached;
        else an empty tensor). The logits stay in the model's dtype: ``algo.token_logprobs`` upcasts
        them chunk by chunk, so no fp32 ``[B, T, V]`` copy is made. Under sequence parallelism each
        rank computes its own positions and the group assembles whole rows (``rlplat.learner.ulysses``)."""
        sp = self.sp
        if sp is None:
            out = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids,
                        use_cache=False)
            logits, targets, rows = out.logits[:, :-1], mb.input_ids[:, 1:], mb.per_sequence
        else:
            shard = ulysses.shard_positions(mb, sp, self.pad_id)
            logits = model(input_ids=shard.input_ids, attention_mask=shard.attention_mask,
                           position_ids=shard.position_ids, use_cache=False).logits
            targets = shard.targets

            def rows(x: torch.Tensor) -> torch.Tensor:
                return mb.per_sequence(ulysses.gather_positions(x, sp, shard))

        lp = rows(token_logprobs(logits, targets, temperature=temperature))
        return lp, rows(entropy_from_logits(logits.detach(), temperature)) if entropy else torch.empty(0)

    @torch.no_grad()
    def _ref_logprobs(self, mb: MicroBatch) -> torch.Tensor:
        return self._logprobs(self.ref, mb, self.spec.temperature)[0]

    def sft_step(self, shard: TrainShard, lr: float, pack_tokens: int | None = None) -> RankStepStats:
        """One supervised step at learning rate ``lr``: token-mean cross-entropy on the completions
        (``loss/sft`` is this rank's share of the global loss); ``pack_tokens``: each micro-batch's
        sequences packed into rows of at most that many tokens (micro-batches are cut as GRPO's)."""
        self.set_lr(lr)
        self.engine.train()
        rule = replace(self._grpo_batching(), pack_tokens=pack_tokens)
        batches = self._micro_batches(shard.sequences, rule)
        micro = []
        for i, (group, mb) in enumerate(batches):
            self.engine.set_gradient_accumulation_boundary(i == len(batches) - 1)
            mb = mb.to(self._device())
            loss = token_cross_entropy(self._logprobs(self.engine, mb)[0], mb.loss_mask, shard.num_tokens)
            self.engine.backward(loss * self.spec.world_size, scale_wrt_gas=False)
            micro.append(MicroStats({"loss/sft": float(loss), **_position_counts(shard, group, mb)}, mb.num_sequences))
        self.engine.step()
        return RankStepStats(tuple(micro), float(self.engine.get_global_grad_norm() or 0.0))

    def distill_step(self, shard: TrainShard, teacher: list[TeacherBatch] | None, lr: float, loss: DistillConfig,
                     train: bool = True) -> RankStepStats:
        """One distillation step at learning rate ``lr`` (``train`` False: the loss only, no update).

        ``teacher`` holds the teacher's batch of each micro-batch (``TeacherGroup.forward``; None
        when the loss has no KL or cosine term). Reports ``loss/distill`` and, as shares of the
        step's loss tokens, ``loss/kl``, ``loss/cosine`` and ``loss/lm`` (each term's unweighted value).
        """
        self.set_lr(lr)
        self.engine.train(train)
        # Cut exactly as the teacher cut them (fixed size, padded), so ``teacher[i]`` matches.
        batches = micro_batches(shard.sequences, MicroBatching(self.spec.learner.micro_batch_size), self.pad_id)
        micro = []
        with torch.set_grad_enabled(train):
            for i, mb in enumerate(batches):
                self.engine.set_gradient_accumulation_boundary(i == len(batches) - 1)
                terms = self._distill_terms(mb.to(self._device()), None if teacher is None else teacher[i],
                                            loss, float(shard.num_tokens))
                total = (loss.kl_weight * terms.get("loss/kl", 0.0) + loss.cosine_weight * terms.get("loss/cosine", 0.0)
                         + loss.lm_weight * terms["loss/lm"])
                if train:
                    self.engine.backward(total * self.spec.world_size, scale_wrt_gas=False)
                values = {"loss/distill": float(total), **{k: float(v) for k, v in terms.items()}}
                micro.append(MicroStats(values, mb.num_sequences))
        if train:
            self.engine.step()
        return RankStepStats(tuple(micro), float(self.engine.get_global_grad_norm() or 0.0) if train else 0.0)

    def _distill_terms(self, mb: MicroBatch, teacher: TeacherBatch | None, loss: DistillConfig,
                       num_tokens: float) -> dict[str, torch.Tensor]:
        """The loss terms of one micro-batch: ``loss/lm`` always, ``loss/kl`` and ``loss/cosine``
        when the teacher sent what they need."""
        out = self.engine(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False,
                          output_hidden_states=teacher is not None and teacher.hidden is not None)
        logits = out.logits[:, :-1]
        terms = {"loss/lm": token_cross_entropy(token_logprobs(logits, mb.input_ids[:, 1:]), mb.loss_mask, num_tokens)}
        if teacher is not None:
            terms["loss/kl"] = forward_kl(logits, teacher.logprobs.to(logits.device), mb.loss_mask, num_tokens,
                                          loss.temperature)
            if teacher.hidden is not None:
                terms["loss/cosine"] = hidden_cosine(out.hidden_states[-1][:, :-1], teacher.hidden.to(logits.device),
                                                     mb.loss_mask, num_tokens)
        return terms

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group (SFT and GRPO share one optimizer)."""
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr

    # ----------------------------------------------------------------------------- weight export

    def export_layout(self, plan: ExportPlan) -> tuple[BucketSpec, ...]:
        """The buckets ``export_weights(plan)`` will write, known before it writes them (a
        streamed sync hands them to the engines first)."""
        metas = [(n, p.dtype, tuple(getattr(p, "ds_shape", p.shape))) for n, p in self.engine.module.named_parameters()]
        # FP8: a fused group (q/k/v, gate/up) in one bucket, quantized with one scale (rlplat.sync.fp8).
        return tuple(plan_buckets(export_metas(metas, plan.fp8), plan.bucket_bytes, fused_group if plan.fp8 else None))

    def export_weights(self, plan: ExportPlan) -> SyncManifest | None:
        """Publish the current weights; every rank must call it (ZeRO-3 gathers are collective).

        Writer ranks write the buckets of ``export_layout(plan)``, in order, each file renamed into
        place when whole, under ``plan.shm_dir``; rank 0 returns the manifest (other ranks return
        None). Files of the previous version are removed first.
        """
        remove_files(self._written)
        self._written = ()
        specs = self.export_layout(plan)
        paths = bucket_paths(plan.shm_dir, plan.tag, plan.version, len(specs))
        params = dict(self.engine.module.named_parameters())
        writer = self.rank in plan.shm_writer_ranks
        refs = []
        for spec, path in zip(specs, paths, strict=True):
            # The parameters behind the bucket's entries (an FP8 weight's scale entry names its weight).
            names = list(dict.fromkeys(e.name.removesuffix(SCALE_SUFFIX) for e in spec.entries))
            with _gathered(self.engine, [params[n] for n in names]):
                if writer or (plan.object_store and self.rank == 0):
                    tensors = [(n, params[n].data) for n in names]
                    named = dict(quantized_items(tensors) if plan.fp8 else tensors)
                    buf = pack_to_file(path, spec, named) if writer else pack(spec, named)
                    if plan.object_store and self.rank == 0:
                        import ray

                        refs.append(ray.put(buf))
        if writer:
            self._written = paths
        if self.rank != 0:
            return None
        return SyncManifest(plan.version, specs, paths, frozenset(), tuple(refs))

    def release_weights(self) -> None:
        """Remove this rank's bucket files (end of run)."""
        remove_files(self._written)
        self._written = ()

    def export_ipc(self) -> IpcExport:
        """CUDA IPC handles to this rank's full weights, on its GPU (``sync.backend=ipc``); every
        rank must call it (ZeRO-3 gathers are collective). Below ZeRO-3 the handles name the
        parameters themselves; at ZeRO-3 each is gathered and copied, and the copies are held. The
        tensors stay alive, unchanged, until ``release_ipc``: no training step in between."""
        held = []
        for name, param in self.engine.module.named_parameters():
            with _gathered(self.engine, [param]):
                held.append((name, param.data.clone() if hasattr(param, "ds_shape") else param.data))
        self._ipc_held = held
        return export_ipc(held)

    def release_ipc(self) -> None:
        """Drop the tensors ``export_ipc`` held (ZeRO-3 copies are freed)."""
        self._ipc_held = []
        if self.spec.device != "cpu":
            torch.cuda.empty_cache()

    # ----------------------------------------------------------------------------- checkpoints

    def save(self, directory: str) -> None:
        """Save model and optimizer state (DeepSpeed format) into ``directory``; collective."""
        self.engine.save_checkpoint(directory, tag="deepspeed")

    def load(self, directory: str) -> None:
        """Restore what ``save`` wrote; collective."""
        path, _ = self.engine.load_checkpoint(directory, tag="deepspeed")
        if path is None:
            raise RuntimeError(f"learner rank {self.rank}: no DeepSpeed checkpoint in {directory}")

    def save_hf(self, directory: str) -> None:
        """Write the policy as a model directory in its own format (transformers or DeciLM; rank 0
        writes; collective). ZeRO-3 parameters are gathered one at a time, never all at once."""
        module = self.engine.module
        if self.engine.zero_optimization_stage() == 3:
            state = gathered_state_dict(module, self.rank)
            if self.rank == 0:
                save_causal_lm(module, directory, state)
        elif self.rank == 0:
            save_causal_lm(module, directory)

    def memory(self) -> dict[str, float]:
        """This rank's host memory: what loading the models cost at its peak (``load_peak_bytes``,
        from before the policy was read to after the reference was), the peak of its whole start-up
        (``setup_peak_bytes``), whether the models were built sharded, and the process's peak and
        current resident bytes now."""
        now = host_memory()
        return {**self.load_memory, "peak_bytes": now["peak"], "current_bytes": now["current"]}

    # ----------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def greedy(self, prompt_token_ids: list[list[int]], max_tokens: int) -> list[list[int]]:
        """Greedy completions from the learner's own weights (to compare with the engine's): plain
        argmax, EOS ids neither stopping nor suppressed, as the engine's ``ignore_eos``."""
        model = self.engine.module
        model.eval()
        with ulysses.whole_sequences(model) if self.sp is not None else contextlib.nullcontext():
            return [greedy_decode(model, prompt, max_tokens) for prompt in prompt_token_ids]

    def heartbeat(self) -> float:
        """Liveness: answered from the actor's ``health`` concurrency group, beside any long call."""
        return time.time()


def _position_counts(shard: TrainShard, group: list[int], mb: MicroBatch) -> dict[str, float]:
    """``positions/real`` (the tokens of the shard's sequences ``group``) and ``positions/computed``
    (what the forward pass computes: rows x row length) of one micro-batch; ``algo.stats`` sums them."""
    real = sum(len(shard.sequences[i].prompt_ids) + len(shard.sequences[i].completion_ids) for i in group)
    return {"positions/real": float(real), "positions/computed": float(mb.input_ids.numel())}


# A JIT build of a DeepSpeed op takes well under this; an older lock beside a built module was
# left by a process killed while it held the lock.
_STALE_LOCK_S = 120.0


def _clear_stale_build_lock(extension: str) -> None:
    """Remove the build lock of a built torch extension when it is stale.

    Every load of a JIT extension takes ``<build dir>/lock`` (torch's ``FileBaton``) and waits, with
    no deadline, while another process holds it; a process killed meanwhile leaves it behind, and
    every learner after it waits forever in ``deepspeed.init_distributed``.
    """
    import logging

    from torch.utils.cpp_extension import _get_build_directory

    build = _get_build_directory(extension, verbose=False)
    lock = os.path.join(build, "lock")
    try:
        age = time.time() - os.path.getmtime(lock)
    except OSError:
        return  # no lock: nothing to clear
    if age > _STALE_LOCK_S and os.path.exists(os.path.join(build, f"{extension}.so")):
        logging.getLogger(__name__).warning("removing the stale build lock %s (%.0f s old)", lock, age)
        with contextlib.suppress(OSError):
            os.remove(lock)


def _gathered(engine: Any, params: list[torch.nn.Parameter]) -> Any:
    """Context that materialises full ZeRO-3 parameters (a no-op below stage 3)."""
    import deepspeed

    if engine.zero_optimization_stage() == 3:
        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()
