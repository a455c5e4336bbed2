"""WeightSync: one versioned learner -> engines sync, run by the driver.

Version 0 is the weights the engines started from (the stage's input model directory, which the
learners loaded too), so a fresh full-precision run needs no sync before its first step. The caller
names each version (the loop's ``StepLedger`` says which the learners hold); the groups' own
deadlines (``timeouts.sync_s``) bound every phase.
"""

from __future__ import annotations

import time
from dataclasses import replace

from rlplat.config.schema import SyncConfig
from rlplat.learner.group import LearnerGroup
from rlplat.rollout.group import RolloutGroup
from rlplat.runtime.protocols import SyncReport
from rlplat.sync.ipc import merge_exports
from rlplat.sync.plan import BUCKETS, IPC, plan_export
from rlplat.sync.transport import bucket_paths
from rlplat.types import ExportPlan, SyncManifest

__all__ = ["SyncReport", "WeightSync"]


class WeightSync:
    """Publishes learner weights to every engine (``rlplat.runtime.protocols.Publisher``).

    ``fp8``: the engines are FP8 (``rollout.precision=fp8``; the mismatch guardrail may turn it off):
    the payload is FP8 where ``plan_export`` says so for ``device``; ``engines_fp8``: whether the
    last sync sent FP8 weights. ``backend``: the engines' weight-transfer backend
    (``rlplat.sync.plan.transfer_backend``): bucket files, or CUDA IPC handles.
    """

    def __init__(self, cfg: SyncConfig, learners: LearnerGroup, rollouts: RolloutGroup, tag: str,
                 fp8: bool = False, device: str = "cpu", backend: str = BUCKETS) -> None:
        self.cfg = cfg
        self.device = device
        self.backend = backend
        self.fp8 = fp8
        self.engines_fp8 = False
        self.learners = learners
        self.rollouts = rollouts
        self.tag = tag
        # Bytes of the last export (known even when loading it into the engines then failed).
        self.last_nbytes = 0

    def sync(self, version: int) -> SyncReport:
        """Export, transfer and load ``version`` of the learners' weights into every engine."""
        start = time.perf_counter()
        if self.backend == IPC:
            return self._ipc(version, start)
        engine_nodes = self.rollouts.node_ids()
        learner_nodes = self.learners.node_ids()
        plan = plan_export(self.cfg, learner_nodes, engine_nodes, version, self.tag, self.fp8, self.device)
        shm_nodes = frozenset(learner_nodes[r] for r in plan.shm_writer_ranks)
        if self.cfg.stream and not plan.object_store:
            self._streamed(plan, shm_nodes)
        else:
            manifest = replace(self.learners.export_weights(plan), shm_nodes=shm_nodes)
            self.last_nbytes = manifest.nbytes
            self.rollouts.load_weights(manifest)
        self.engines_fp8 = plan.fp8
        n_shm = sum(n in shm_nodes for n in engine_nodes)
        return SyncReport(version, time.perf_counter() - start, self.last_nbytes, n_shm, len(engine_nodes) - n_shm)

    def _ipc(self, version: int, start: float) -> SyncReport:
        """CUDA IPC (``sync.backend=ipc``, co-located GPU engines): each learner rank hands out
        handles to its own GPU tensors, each engine copies from the ones on its GPU, and the ranks
        let go of them once every engine has loaded. The weights go in their own dtype: FP8 engines
        quantize them (vLLM's online FP8), as within a node on GPU the bucket path does too."""
        export = merge_exports(self.learners.export_ipc())
        self.last_nbytes = export.nbytes
        try:
            self.rollouts.load_ipc(export.update_info(), version, export.nbytes)
        finally:
            self.rollouts.ipc_done()
            self.learners.release_ipc()
        self.engines_fp8 = False
        engines = len(self.rollouts.node_ids())
        return SyncReport(version, time.perf_counter() - start, export.nbytes, engines, 0)

    def _streamed(self, plan: ExportPlan, shm_nodes: frozenset[str]) -> None:
        """Export and load at once (``sync.stream``): the engines start first, with the bucket
        layout, and load each bucket file as soon as the learners have renamed it into place."""
        specs = self.learners.export_layout(plan)
        paths = bucket_paths(plan.shm_dir, plan.tag, plan.version, len(specs))
        manifest = SyncManifest(plan.version, specs, paths, shm_nodes,
                                stream_wait_s=self.learners.timeouts.sync_s)
        self.last_nbytes = manifest.nbytes
        loading = self.rollouts.start_load(manifest)
        try:
            self.learners.export_weights(plan)
        except BaseException:
            self.rollouts.abandon_load(manifest, loading)
            raise
        self.rollouts.finish_load(manifest, loading)
