"""LearnerGroup: the DeepSpeed data-parallel ranks as Ray actors, called together.

Every call waits with the phase deadline and heartbeats (``rlplat.distributed.waits``): a rank that
dies, freezes or deadlocks is named within ``faults.heartbeat_s``, and the run stops (the learners'
state is then inconsistent; the last complete checkpoint is the resume point). The ranks meet over
torch.distributed at an address on the first rank's node, bound to loopback when every rank is on
that one node of a local run.

The group owns its deadlines (``timeouts.train_s`` for training, ``timeouts.sync_s`` for
exporting weights, ``timeouts.checkpoint_s`` for saving and loading, ``timeouts.generate_s`` for
greedy checks) and consults the run's ``FaultInjector`` when training starts (a testing aid).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup
from typing_extensions import Self

from rlplat.config.schema import DistillConfig, TimeoutsConfig
from rlplat.distributed.placement import PlacementPlan
from rlplat.distributed.waits import HEALTH_GROUPS, Call, arm_faults, calls, in_bundle, wait_all
from rlplat.faults import FaultInjector, FaultLog, FaultPlan
from rlplat.learner.worker import LearnerSpec, LearnerWorker
from rlplat.sync.ipc import IpcExport
from rlplat.types import BucketSpec, ExportPlan, RankStepStats, SyncManifest, TrainShard

log = logging.getLogger(__name__)


@ray.remote
def _rendezvous_address() -> tuple[str, int]:
    """This node's address and a free TCP port on it (the rank-0 rendezvous of torch.distributed)."""
    import socket

    addr = ray.util.get_node_ip_address()
    with socket.socket() as s:
        s.bind((addr, 0))
        return addr, s.getsockname()[1]


class LearnerGroup:
    """All learner ranks. A failure of any rank is fatal to the step (``ActorFailure``)."""

    def __init__(self, spec: LearnerSpec, plan: PlacementPlan, pg: PlacementGroup, timeouts: TimeoutsConfig,
                 heartbeat_s: float | None = None, injector: FaultInjector | None = None) -> None:
        first = in_bundle(pg, plan.learner_bundles[0])
        addr, port = ray.get(_rendezvous_address.options(num_cpus=0, scheduling_strategy=first).remote(),
                             timeout=timeouts.actor_start_s)
        spec = replace(spec, master_addr=addr, master_port=port, world_size=plan.num_learners)
        self.spec = spec
        self.heartbeat_s = heartbeat_s
        actor_cls = ray.remote(concurrency_groups=HEALTH_GROUPS)(LearnerWorker)
        self.workers = [
            actor_cls.options(num_cpus=1, num_gpus=plan.learner_gpus, max_restarts=0,
                              scheduling_strategy=in_bundle(pg, b)).remote(spec, rank)
            for rank, b in enumerate(plan.learner_bundles)
        ]
        self.timeouts = timeouts
        self.injector = injector or FaultInjector(FaultPlan(), FaultLog())
        self.infos: list[dict[str, Any]] = []
        self._setup = calls([w.setup.remote() for w in self.workers], self.workers, self.names)

    def wait_started(self) -> Self:
        """Wait until every rank has loaded the model and joined the group (the constructor only
        starts them, so that other actors can start meanwhile); returns the group."""
        # No heartbeats while starting: an actor answers nothing until its constructor returns.
        self.infos = wait_all(self._setup, "actor_start", self.timeouts.actor_start_s)
        return self

    @property
    def names(self) -> list[str]:
        """Human-readable actor names, for errors."""
        return [f"learner rank {i}" for i in range(len(self.workers))]

    @property
    def world_size(self) -> int:
        """Data-parallel world size: the shards a step is dealt into. Under sequence parallelism
        (``learner.sequence_parallel`` = N) the N ranks of a group share one shard."""
        return len(self.workers) // self.spec.learner.sequence_parallel

    def _all(self, phase: str, timeout_s: float, call: Callable[[Any], Any],
             interrupt: Callable[[], bool] | None = None) -> list[Any]:
        return wait_all(calls([call(w) for w in self.workers], self.workers, self.names), phase, timeout_s,
                        self.heartbeat_s, interrupt)

    def _each(self, shards: Sequence[Any], call: Callable[[Any, Any], Any],
              interrupt: Callable[[], bool] | None = None) -> list[Any]:
        """``call(actor, shards[g])`` on every rank of data-parallel group ``g``, waited for with the
        training deadline; one result per group (its ranks compute the same one under sequence
        parallelism: the first rank's)."""
        n = self.spec.learner.sequence_parallel
        if len(shards) != self.world_size:
            raise ValueError(f"{len(shards)} shards for {self.world_size} data-parallel groups")
        refs = [call(w, shards[r // n]) for r, w in enumerate(self.workers)]
        out = wait_all(calls(refs, self.workers, self.names), "train", self.timeouts.train_s, self.heartbeat_s,
                       interrupt)
        return out[::n]

    def train_step(self, shards: Sequence[TrainShard],
                   interrupt: Callable[[], bool] | None = None) -> list[RankStepStats]:
        """One GRPO optimizer step (``shards[r]`` to rank ``r``); returns every rank's report
        (reduce them with ``rlplat.algo.stats``). ``interrupt``: see ``old_logprobs``."""
        self._arm("train")
        return self._each(shards, lambda w, s: w.train_step.remote(s), interrupt)

    def old_logprobs(self, shards: Sequence[TrainShard],
                     interrupt: Callable[[], bool] | None = None) -> list[TrainShard]:
        """The shards with each sequence's ``learner_logprobs`` filled in by its rank, under the
        weights the learners hold now (call it before the step's first optimizer step).
        ``interrupt`` abandons the wait (``Interrupted``) when it returns True."""
        self._arm("train")
        return self._each(shards, lambda w, s: w.old_logprobs.remote(s), interrupt)

    def offload(self) -> float:
        """Every rank moves its state to host memory (``LearnerWorker.offload``); the slowest
        rank's seconds."""
        return max(self._all("train", self.timeouts.train_s, lambda w: w.offload.remote()))

    def reload(self) -> float:
        """Every rank moves its state back to the device; the slowest rank's seconds."""
        return max(self._all("train", self.timeouts.train_s, lambda w: w.reload.remote()))

    def _arm(self, phase: str) -> None:
        """Arm the ranks the run's injected faults name for ``phase`` of this step (testing aid)."""
        arm_faults(self.workers, self.names, self.injector.at(phase, "learner"), phase, self.timeouts.actor_start_s)

    def sft_step(self, shards: Sequence[TrainShard], lr: float, pack_tokens: int | None = None) -> list[RankStepStats]:
        """One supervised step at learning rate ``lr`` (packed rows with ``pack_tokens``); returns
        every rank's report."""
        return self._each(shards, lambda w, s: w.sft_step.remote(s, lr, pack_tokens))

    def distill_step(self, shards: Sequence[TrainShard], teacher: Sequence[Any] | None, lr: float,
                     loss: DistillConfig, train: bool = True,
                     also_wait: Sequence[Call] = ()) -> list[RankStepStats]:
        """One distillation step (``train`` False: the loss only). ``teacher[r]`` is the reference
        of rank ``r``'s teacher batches (``TeacherGroup.forward``), or None without a teacher;
        ``also_wait``: the teachers' calls, watched with the ranks' (a frozen teacher is named)."""
        refs = [w.distill_step.remote(s, None if teacher is None else teacher[r], lr, loss, train)
                for r, (w, s) in enumerate(zip(self.workers, shards, strict=True))]
        watched = [*also_wait, *calls(refs, self.workers, self.names)]
        return wait_all(watched, "train", self.timeouts.train_s, self.heartbeat_s)[len(also_wait):]

    def export_layout(self, plan: ExportPlan) -> tuple[BucketSpec, ...]:
        """The buckets the next ``export_weights(plan)`` will write (asked of rank 0)."""
        out: tuple[BucketSpec, ...] = wait_all(calls([self.workers[0].export_layout.remote(plan)], self.workers[:1],
                                                      self.names[:1]), "sync", self.timeouts.sync_s,
                                               self.heartbeat_s)[0]
        return out

    def export_weights(self, plan: ExportPlan) -> SyncManifest:
        """Publish weights; returns rank 0's manifest."""
        manifests = self._all("sync", self.timeouts.sync_s, lambda w: w.export_weights.remote(plan))
        return manifests[0]

    def export_ipc(self) -> list[IpcExport]:
        """Every rank's CUDA IPC handles to its full weights (``LearnerWorker.export_ipc``); they
        stay valid until ``release_ipc``."""
        exports: list[IpcExport] = self._all("sync", self.timeouts.sync_s, lambda w: w.export_ipc.remote())
        return exports

    def release_ipc(self) -> None:
        """Drop what ``export_ipc`` held (every engine has loaded it)."""
        self._all("sync", self.timeouts.sync_s, lambda w: w.release_ipc.remote())

    def save(self, directory: str) -> None:
        """DeepSpeed checkpoint of every rank into ``directory``."""
        self._all("checkpoint", self.timeouts.checkpoint_s, lambda w: w.save.remote(directory))

    def load(self, directory: str) -> None:
        """Restore a DeepSpeed checkpoint on every rank."""
        self._all("checkpoint", self.timeouts.checkpoint_s, lambda w: w.load.remote(directory))

    def save_hf(self, directory: str) -> None:
        """Write the policy as a model directory in its own format (transformers or DeciLM)."""
        self._all("checkpoint", self.timeouts.checkpoint_s, lambda w: w.save_hf.remote(directory))

    def greedy(self, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
        """Greedy completions of the policy. Every rank runs them: under ZeRO-3 each forward pass
        gathers parameters collectively, so rank 0 cannot generate alone."""
        return self._all("generate", self.timeouts.generate_s, lambda w: w.greedy.remote(prompts, max_tokens))[0]

    def memory(self) -> list[dict[str, float]]:
        """Each rank's host memory (``LearnerWorker.memory``: what loading the models cost at its peak)."""
        return self._all("actor_start", self.timeouts.actor_start_s, lambda w: w.memory.remote())

    def node_ids(self) -> list[str]:
        """Node id of each rank."""
        return [info["node_id"] for info in self.infos]

    def shutdown(self) -> None:
        """Remove published weight files and kill every rank."""
        try:
            self._all("shutdown", 30, lambda w: w.release_weights.remote())
        except Exception as err:  # noqa: BLE001 - best effort at shutdown; the actors are killed anyway
            log.debug("learners did not release their weight files: %s", err)
        for w in self.workers:
            ray.kill(w, no_restart=True)
