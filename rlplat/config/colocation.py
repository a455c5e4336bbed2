"""What a config implies for GPU co-location: whether engines sleep and learners offload (pure).

Placement, the GRPO loop, the dry-run plan and validation all ask; they ask here.
"""

from __future__ import annotations

from rlplat.config.schema import ClusterConfig, LearnerConfig, RolloutConfig


def engines_sleep(cluster: ClusterConfig, rollout: RolloutConfig) -> bool:
    """Whether the engines sleep while the learners train: co-located on GPU, handing the device over."""
    return cluster.device == "gpu" and cluster.colocate and rollout.sleep_between_phases


def learners_offload(cluster: ClusterConfig, rollout: RolloutConfig, learner: LearnerConfig) -> bool:
    """Whether the learners move their state to host memory while the engines generate
    (``learner.offload_states``; unset: wherever the engines sleep, i.e. share the learners' GPUs)."""
    return engines_sleep(cluster, rollout) and learner.offload_states is not False
