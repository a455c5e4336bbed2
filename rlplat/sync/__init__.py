"""Learner -> rollout weight sync, the pure part: bucket packing, transports, export plans.

``buckets`` packs named tensors into flat byte buckets; ``transport`` moves buckets through
/dev/shm on the same node (the paper's route) or the Ray object store across nodes; ``plan``
chooses the writers of each version. The records they exchange (``BucketSpec``, ``ExportPlan``,
``SyncManifest``) are in ``rlplat.types``; the driver-side coordinator that runs a sync with a
deadline is ``rlplat.runtime.weight_sync``.
"""
