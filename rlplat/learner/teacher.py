"""Teacher actors of the distillation stage: a frozen model that scores the students' batches.

A teacher is a forward-only Hugging Face causal LM in its own Ray actor, placed in the slots the
placement plan gives rollout engines (the distillation stage starts none), so on a co-located node
each learner rank has a teacher in its own bundle. For every rank's shard a teacher returns one
``TeacherBatch`` per micro-batch, cut exactly as the learner cuts it (``micro_batches``); the
learner receives them as an object reference, so the distributions go teacher -> learner through
the object store and never through the driver, which waits on a small acknowledgement instead.

The full next-token distribution crosses the object store (``[B, T, V]`` float32): cheap at the
tiny vocabularies here; at a real vocabulary a top-k of it is what should travel.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray.util.placement_group import PlacementGroup
from typing_extensions import Self

from rlplat.algo.distill import TeacherBatch, token_cross_entropy
from rlplat.algo.logprobs import token_logprobs
from rlplat.algo.microbatches import MicroBatching, micro_batches
from rlplat.config.schema import TimeoutsConfig
from rlplat.distributed.placement import PlacementPlan
from rlplat.distributed.waits import HEALTH_GROUPS, Call, calls, in_bundle, wait_all
from rlplat.models.hf import load_causal_lm
from rlplat.types import TrainShard


@dataclass(frozen=True)
class TeacherSpec:
    """What a teacher needs: its model, where it runs, and what to return."""

    model_path: str
    dtype: str
    device: str
    temperature: float
    hidden: bool  # also return the final hidden states (cosine loss)
    micro_batch_size: int
    cpu_threads: int = 1


class TeacherWorker:
    """One frozen teacher model; created as a Ray actor by ``TeacherGroup``."""

    def __init__(self, spec: TeacherSpec) -> None:
        self.spec = spec
        if spec.device == "cpu":
            torch.set_num_threads(spec.cpu_threads)

    def setup(self) -> dict[str, Any]:
        """Load the model; returns node id and pid."""
        device = torch.device("cpu") if self.spec.device == "cpu" else torch.device("cuda")
        self.model = load_causal_lm(self.spec.model_path, getattr(torch, self.spec.dtype))
        self.model.requires_grad_(False)
        self.model.eval().to(device)
        self.device = device
        self.pad_id = self.model.config.pad_token_id or 0
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    @torch.no_grad()
    def forward(self, shard: TrainShard) -> tuple[list[TeacherBatch], bool]:
        """The teacher's batches for ``shard`` (returned as two objects: the batches, and True
        for the driver to wait on)."""
        out = []
        for mb in micro_batches(shard.sequences, MicroBatching(self.spec.micro_batch_size), self.pad_id):
            mb = mb.to(self.device)
            res = self.model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False,
                             output_hidden_states=self.spec.hidden)
            logits = res.logits[:, :-1].float() / self.spec.temperature
            hidden = res.hidden_states[-1][:, :-1].float().cpu() if self.spec.hidden else None
            out.append(TeacherBatch(torch.log_softmax(logits, dim=-1).cpu(), hidden))
        return out, True

    @torch.no_grad()
    def lm_loss(self, shard: TrainShard) -> float:
        """The teacher's token-mean cross-entropy on ``shard``'s loss tokens (its held-out loss)."""
        total = 0.0
        for mb in micro_batches(shard.sequences, MicroBatching(self.spec.micro_batch_size), self.pad_id):
            mb = mb.to(self.device)
            logits = self.model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, use_cache=False).logits
            lp = token_logprobs(logits[:, :-1], mb.input_ids[:, 1:])
            total += float(token_cross_entropy(lp, mb.loss_mask, float(shard.num_tokens)))
        return total

    def heartbeat(self) -> float:
        """Liveness, answered from the ``health`` concurrency group."""
        return time.time()


class TeacherGroup:
    """The teachers of a stage, one per rollout slot of the placement plan."""

    def __init__(self, spec: TeacherSpec, plan: PlacementPlan, pg: PlacementGroup, timeouts: TimeoutsConfig,
                 heartbeat_s: float | None) -> None:
        actor_cls = ray.remote(concurrency_groups=HEALTH_GROUPS)(TeacherWorker)
        self.heartbeat_s = heartbeat_s
        self.workers = [actor_cls.options(num_cpus=1, num_gpus=plan.teacher_gpus, max_restarts=0,
                                          scheduling_strategy=in_bundle(pg, bundles[0])).remote(spec)
                        for bundles in plan.engine_bundles]
        self.timeouts = timeouts
        self.infos: list[dict[str, Any]] = []
        self._setup = calls([w.setup.remote() for w in self.workers], self.workers, self.names)

    def wait_started(self) -> Self:
        """Wait until every teacher has loaded its model (the constructor only starts them);
        returns the group."""
        self.infos = wait_all(self._setup, "actor_start", self.timeouts.actor_start_s)
        return self

    @property
    def names(self) -> list[str]:
        """Human-readable actor names, for errors."""
        return [f"teacher {i}" for i in range(len(self.workers))]

    def forward(self, shards: list[TrainShard]) -> tuple[list[ray.ObjectRef], list[Call]]:
        """Start the teachers on ``shards``: the references of the batches (hand them to the
        learners) and the acknowledgements to wait on (``wait_all``)."""
        workers, names = self._serving(len(shards))
        refs = [w.forward.options(num_returns=2).remote(s) for w, s in zip(workers, shards, strict=True)]
        return [batches for batches, _ in refs], calls([ack for _, ack in refs], workers, names)

    def lm_loss(self, shards: list[TrainShard]) -> float:
        """The teacher's cross-entropy on the loss tokens of ``shards`` (one optimizer step's)."""
        workers, names = self._serving(len(shards))
        refs = [w.lm_loss.remote(s) for w, s in zip(workers, shards, strict=True)]
        return float(sum(wait_all(calls(refs, workers, names), "train", self.timeouts.train_s, self.heartbeat_s)))

    def _serving(self, num_shards: int) -> tuple[list[Any], list[str]]:
        """The teacher of each shard and its name (shard ``r`` to teacher ``r mod n``)."""
        idx = [r % len(self.workers) for r in range(num_shards)]
        return [self.workers[i] for i in idx], [self.names[i] for i in idx]

    def shutdown(self) -> None:
        """Kill every teacher."""
        for w in self.workers:
            ray.kill(w, no_restart=True)
