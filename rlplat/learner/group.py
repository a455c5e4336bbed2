"""LearnerGroup: the DeepSpeed data-parallel ranks as Ray actors, called together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup

from rlplat.distributed.placement import PlacementPlan
from rlplat.distributed.waits import in_bundle, wait_all
from rlplat.learner.worker import LearnerSpec, LearnerWorker
from rlplat.types import ExportPlan, RankStepStats, SyncManifest, TrainShard


@ray.remote
def _free_port() -> tuple[str, int]:
    """An address and free TCP port on the node this task runs on (for the rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return ray.util.get_node_ip_address(), s.getsockname()[1]


class LearnerGroup:
    """All learner ranks. A failure of any rank is fatal to the step (``ActorFailure``)."""

    def __init__(self, spec: LearnerSpec, plan: PlacementPlan, pg: PlacementGroup,
                 start_timeout_s: float) -> None:
        first = in_bundle(pg, plan.learner_bundles[0])
        addr, port = ray.get(_free_port.options(num_cpus=0, scheduling_strategy=first).remote(),
                             timeout=start_timeout_s)
        spec = replace(spec, master_addr=addr, master_port=port, world_size=plan.num_learners)
        self.spec = spec
        actor_cls = ray.remote(LearnerWorker)
        self.workers = [
            actor_cls.options(num_cpus=1, num_gpus=plan.learner_gpus, max_restarts=0,
                              scheduling_strategy=in_bundle(pg, b)).remote(spec, rank)
            for rank, b in enumerate(plan.learner_bundles)
        ]
        self.infos = self._all("actor_start", start_timeout_s, lambda w: w.setup.remote())

    @property
    def names(self) -> list[str]:
        """Human-readable actor names, for errors."""
        return [f"learner rank {i}" for i in range(len(self.workers))]

    @property
    def world_size(self) -> int:
        """Data-parallel world size."""
        return len(self.workers)

    def _all(self, phase: str, timeout_s: float, call: Any) -> list[Any]:
        return wait_all([call(w) for w in self.workers], self.names, phase, timeout_s)

    def train_step(self, shards: Sequence[TrainShard], timeout_s: float) -> list[RankStepStats]:
        """One GRPO optimizer step (``shards[r]`` to rank ``r``); returns every rank's report
        (reduce them with ``rlplat.algo.stats``)."""
        refs = [w.train_step.remote(s) for w, s in zip(self.workers, shards)]
        return wait_all(refs, self.names, "train", timeout_s)

    def sft_step(self, shards: Sequence[TrainShard], lr: float, timeout_s: float) -> list[RankStepStats]:
        """One supervised step at learning rate ``lr``; returns every rank's report."""
        refs = [w.sft_step.remote(s, lr) for w, s in zip(self.workers, shards)]
        return wait_all(refs, self.names, "train", timeout_s)

    def export_weights(self, plan: ExportPlan, timeout_s: float) -> SyncManifest:
        """Publish weights; returns rank 0's manifest."""
        manifests = self._all("sync", timeout_s, lambda w: w.export_weights.remote(plan))
        return manifests[0]

    def save(self, directory: str, timeout_s: float) -> None:
        """DeepSpeed checkpoint of every rank into ``directory``."""
        self._all("checkpoint", timeout_s, lambda w: w.save.remote(directory))

    def load(self, directory: str, timeout_s: float) -> None:
        """Restore a DeepSpeed checkpoint on every rank."""
        self._all("checkpoint", timeout_s, lambda w: w.load.remote(directory))

    def save_hf(self, directory: str, timeout_s: float) -> None:
        """Write the policy as a Hugging Face model directory."""
        self._all("checkpoint", timeout_s, lambda w: w.save_hf.remote(directory))

    def greedy(self, prompts: list[list[int]], max_tokens: int, timeout_s: float) -> list[list[int]]:
        """Greedy completions of the policy. Every rank runs them: under ZeRO-3 each forward pass
        gathers parameters collectively, so rank 0 cannot generate alone."""
        return self._all("generate", timeout_s, lambda w: w.greedy.remote(prompts, max_tokens))[0]

    def node_ids(self) -> list[str]:
        """Node id of each rank."""
        return [info["node_id"] for info in self.infos]

    def shutdown(self) -> None:
        """Remove published weight files and kill every rank."""
        try:
            wait_all([w.release_weights.remote() for w in self.workers], self.names, "shutdown", 30)
        except Exception:  # noqa: BLE001 - best effort at shutdown; the actors are killed anyway
            pass
        for w in self.workers:
            ray.kill(w, no_restart=True)
