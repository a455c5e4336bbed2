"""WeightSync: one versioned learner -> engines sync, with a deadline, run by the driver."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from rlplat.config.schema import SyncConfig
from rlplat.learner.group import LearnerGroup
from rlplat.rollout.group import RolloutGroup
from rlplat.sync.transport import ExportPlan


@dataclass(frozen=True)
class SyncReport:
    """What one sync did."""

    version: int
    seconds: float
    nbytes: int
    shm_engines: int
    object_store_engines: int


def plan_export(cfg: SyncConfig, learner_nodes: list[str], engine_nodes: list[str], version: int,
                tag: str) -> ExportPlan:
    """Choose writers: the lowest learner rank on each engine node writes /dev/shm files; engines
    on nodes without a learner (or all engines, with ``transport=object_store``) read from the
    Ray object store."""
    writers: dict[str, int] = {}
    if cfg.transport != "object_store":
        for rank, node in enumerate(learner_nodes):
            if node in engine_nodes and node not in writers:
                writers[node] = rank
    remote = [n for n in engine_nodes if n not in writers]
    if remote and cfg.transport == "shm":
        raise RuntimeError("sync.transport=shm but some rollout engines share no node with a "
                           "learner; use sync.transport=auto")
    return ExportPlan(version, tag, cfg.shm_dir, frozenset(writers.values()), bool(remote),
                      cfg.bucket_mb << 20)


class WeightSync:
    """Publishes learner weights to every engine; ``version`` increases by one per sync."""

    def __init__(self, cfg: SyncConfig, learners: LearnerGroup, rollouts: RolloutGroup, tag: str,
                 version: int = 0) -> None:
        self.cfg = cfg
        self.learners = learners
        self.rollouts = rollouts
        self.tag = tag
        self.version = version

    def sync(self, timeout_s: float, version: int | None = None) -> SyncReport:
        """Export, transfer and load the next version (or ``version``, when resuming) within
        ``timeout_s`` per phase."""
        start = time.perf_counter()
        version = self.version + 1 if version is None else version
        engine_nodes = self.rollouts.node_ids()
        plan = plan_export(self.cfg, self.learners.node_ids(), engine_nodes, version, self.tag)
        learner_nodes = self.learners.node_ids()
        shm_nodes = frozenset(learner_nodes[r] for r in plan.shm_writer_ranks)
        manifest = replace(self.learners.export_weights(plan, timeout_s), shm_nodes=shm_nodes)
        self.rollouts.load_weights(manifest, timeout_s)
        self.version = version
        n_shm = sum(n in shm_nodes for n in engine_nodes)
        return SyncReport(version, time.perf_counter() - start, manifest.nbytes, n_shm,
                          len(engine_nodes) - n_shm)
