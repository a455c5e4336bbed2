"""Who holds a co-located GPU when: the engines generate, the learners train (pure ordering).

Co-located on GPU (``rlplat.config.colocation``), the engines sleep while the learners train, and
the learners keep their state in host memory while the engines generate. A sync sits between the
two: the learners still hold the device then (a CUDA IPC sync hands the engines their GPU tensors),
and the engines get their weights memory back as they load. Off GPU, or not co-located, both
functions do nothing. The GRPO loop and ``rlplat doctor`` order the phases with these.
"""

from __future__ import annotations

from rlplat.config.colocation import engines_sleep, learners_offload
from rlplat.config.schema import Config
from rlplat.runtime.protocols import Learners, Rollouts


def take_device(cfg: Config, learners: Learners, rollouts: Rollouts) -> dict[str, float]:
    """Before training or a sync between steps: the engines sleep, then the learners take their
    state back (``time/reload_s``)."""
    if engines_sleep(cfg.cluster, cfg.rollout):
        rollouts.sleep()
    return {"time/reload_s": learners.reload()} if learners_offload(cfg.cluster, cfg.rollout, cfg.learner) else {}


def hand_back(cfg: Config, learners: Learners, rollouts: Rollouts) -> dict[str, float]:
    """After a sync: the learners move their state to host memory (``time/offload_s``), then the
    engines allocate their KV cache again."""
    moved = {"time/offload_s": learners.offload()} if learners_offload(cfg.cluster, cfg.rollout, cfg.learner) else {}
    if engines_sleep(cfg.cluster, cfg.rollout):
        rollouts.wake()
    return moved
