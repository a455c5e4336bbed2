"""Which vLLM weight-transfer backend the engines use, which learner ranks publish a weight version,
and through which transport (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from rlplat.config.schema import SyncConfig
from rlplat.types import ExportPlan

# vLLM weight-transfer backends: rlplat's bucket files (``rlplat.rollout.transfer``), and vLLM's
# own CUDA IPC one (handles from ``rlplat.sync.ipc``).
BUCKETS = "rlplat_shm"
IPC = "ipc"


def transfer_backend(cfg: SyncConfig, device: str, colocate: bool) -> str:
    """The engines' weight-transfer backend: CUDA IPC where every engine shares its GPUs with
    learners (``sync.backend`` auto or ipc), bucket files otherwise (CPU, separate GPU engines)."""
    if cfg.backend == "ipc" or (cfg.backend == "auto" and device == "gpu" and colocate):
        return IPC
    return BUCKETS


def plan_export(cfg: SyncConfig, learner_nodes: Sequence[str], engine_nodes: Sequence[str], version: int,
                tag: str, fp8: bool = False, device: str = "cpu") -> ExportPlan:
    """Choose writers: the lowest learner rank on each engine node writes /dev/shm files; engines
    on nodes without a learner (or all engines, with ``transport=object_store``) read from the
    Ray object store.

    ``fp8`` (FP8 engines): the payload is FP8 (``rlplat.sync.fp8``) on CPU, where it is how the
    engines get FP8 numerics (emulated), and on GPU only when the weights cross nodes (half the
    bytes through the object store). Within a GPU node the weights go in their own dtype and vLLM
    quantizes them itself (its online FP8), as the peers do.

    Raises:
        RuntimeError: ``transport=shm`` while some engine shares no node with a learner.
    """
    writers: dict[str, int] = {}
    if cfg.transport != "object_store":
        for rank, node in enumerate(learner_nodes):
            if node in engine_nodes and node not in writers:
                writers[node] = rank
    remote = [n for n in engine_nodes if n not in writers]
    if remote and cfg.transport == "shm":
        raise RuntimeError("sync.transport=shm but some rollout engines share no node with a learner; "
                         "use sync.transport=auto")
    payload_fp8 = fp8 and (device == "cpu" or bool(remote))
    return ExportPlan(version, tag, cfg.shm_dir, frozenset(writers.values()), bool(remote), cfg.bucket_mb << 20,
                      payload_fp8)
