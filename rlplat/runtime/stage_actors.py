"""The actors of one stage: placement group, learners, rollout engines or teachers, reward scorer.

``StageActors`` is a context manager so that a stage that fails still releases its placement
group and kills its actors (and the learners remove their /dev/shm files).
"""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import TypeVar

from ray.util.placement_group import PlacementGroup, remove_placement_group
from typing_extensions import Self

from rlplat.config.colocation import learners_offload
from rlplat.config.schema import Config
from rlplat.distributed.cluster import check_resources, create_placement_group
from rlplat.distributed.placement import cpu_binds, plan_placement
from rlplat.faults import FaultInjector, FaultLog, parse_faults
from rlplat.learner.group import LearnerGroup
from rlplat.learner.teacher import TeacherGroup, TeacherSpec
from rlplat.learner.worker import LearnerSpec
from rlplat.rollout.group import RolloutGroup
from rlplat.rollout.worker import EngineSpec
from rlplat.runtime.protocols import LoopParts
from rlplat.runtime.scorer import Scorer
from rlplat.runtime.weight_sync import WeightSync
from rlplat.sync.plan import transfer_backend
from rlplat.telemetry import MetricTags

log = logging.getLogger(__name__)
_Part = TypeVar("_Part")


def learner_spec(cfg: Config, model_path: str, lr: float) -> LearnerSpec:
    """LearnerSpec from the run config (address and port are filled in by ``LearnerGroup``)."""
    return LearnerSpec(
        model_path=model_path, dtype=cfg.model.dtype, device=cfg.cluster.device, learner=cfg.learner,
        grpo=cfg.grpo, temperature=cfg.rollout.sampling.temperature,
        max_response_tokens=cfg.rollout.sampling.max_new_tokens, lr=lr, world_size=0,
        master_addr="", master_port=0, seed=cfg.seed, collective_timeout_s=cfg.timeouts.train_s,
        gradient_checkpointing=cfg.model.gradient_checkpointing, old_logprobs=cfg.old_logprobs,
    )


class StageActors:
    """Starts what a stage needs; ``rollout``/``scorer``/``learners`` False skip engines, rewards
    and learners (the placement group keeps its full shape either way). ``teacher``: teachers in
    the engines' slots (a distillation stage, which starts no engines). ``tags``: engines and
    scorer export their Ray metrics with these (``rlplat.telemetry``)."""

    def __init__(self, cfg: Config, model_path: str, lr: float, rollout: bool = True,
                 scorer: bool = True, learners: bool = True, fault_log: FaultLog | None = None,
                 teacher: TeacherSpec | None = None, tags: MetricTags | None = None) -> None:
        if teacher is not None and rollout:
            raise ValueError("teachers take the rollout engines' slots: start them with rollout=False")
        self.cfg = cfg
        self.tags = tags
        # What fails is recorded here (and checkpointed by the stage that owns the log); the
        # groups consult the injection plan (``faults.inject``, a testing aid) for their phases.
        self.fault_log = fault_log or FaultLog()
        plan = parse_faults(cfg.faults.inject)
        injector = FaultInjector(plan, self.fault_log)
        self.plan = plan_placement(cfg.cluster, cfg.rollout)
        self.transfer_backend = transfer_backend(cfg.sync, cfg.cluster.device, cfg.cluster.colocate)
        check_resources(self.plan)
        t = cfg.timeouts
        pg = create_placement_group(self.plan, t.actor_start_s)
        self.pg: PlacementGroup | None = pg
        self.learners: LearnerGroup | None = None
        self.rollouts: RolloutGroup | None = None
        self.scorer: Scorer | None = None
        self.teachers: TeacherGroup | None = None
        try:
            # Every actor process starts at once, so that their imports and model loads overlap;
            # the engines are built last, once the learners hold their memory
            # (``RolloutGroup.wait_started``).
            if scorer:
                self.scorer = Scorer(cfg.reward, cfg.faults, self.fault_log, t, tags, injector)
            if teacher is not None:
                self.teachers = TeacherGroup(teacher, self.plan, pg, t, cfg.faults.heartbeat_s)
            if learners:
                self.learners = LearnerGroup(learner_spec(cfg, model_path, lr), self.plan, pg, t,
                                             cfg.faults.heartbeat_s, injector)
            if rollout:
                spec = EngineSpec(model_path, cfg.model.dtype, cfg.cluster.device, cfg.rollout, cfg.seed,
                                  crash_prompts=plan.crash_prompts, metric_tags=tags,
                                  weight_backend=self.transfer_backend)
                binds = cpu_binds(self.plan, os.cpu_count() or 1, cfg.cluster.devices_per_node)
                self.rollouts = RolloutGroup(spec, self.plan, pg, binds, t, cfg.faults, self.fault_log, injector)
            for part in (self.teachers, self.learners, self.rollouts, self.scorer):
                if part is None:
                    continue
                if part is self.rollouts and self.learners is not None and \
                        learners_offload(cfg.cluster, cfg.rollout, cfg.learner):
                    # Co-located GPU engines are built (and size their KV cache) with the device
                    # to themselves: the learners keep their state in host memory until they train.
                    self.learners.offload()
                part.wait_started()
        except BaseException:
            self.close()
            raise

    @property
    def learner_group(self) -> LearnerGroup:
        """The learners (raises if this stage started none)."""
        return _started(self.learners, "learners", "learners=False")

    @property
    def rollout_group(self) -> RolloutGroup:
        """The rollout engines (raises if this stage started none)."""
        return _started(self.rollouts, "rollout engines", "rollout=False")

    @property
    def reward_scorer(self) -> Scorer:
        """The reward scorer (raises if this stage started none)."""
        return _started(self.scorer, "reward scorer", "scorer=False")

    def loop_parts(self, tag: str, fp8: bool) -> LoopParts:
        """The learners, engines and scorer as a GRPO loop's parts, with a weight sync between
        them (``tag``: the run's /dev/shm file tag; ``fp8``: send FP8 weights)."""
        learners, rollouts = self.learner_group, self.rollout_group
        return LoopParts(learners, rollouts, self.reward_scorer,
                         WeightSync(self.cfg.sync, learners, rollouts, tag=tag, fp8=fp8, device=self.cfg.cluster.device,
                                    backend=self.transfer_backend))

    def placement(self) -> dict[str, list[dict[str, object]]]:
        """Which actor runs where (node id, pid): written to ``placement.json`` by stages."""
        return {"learners": list(self.learners.infos) if self.learners else [],
                "engines": list(self.rollouts.infos) if self.rollouts else []}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Kill every actor and release the placement group (idempotent)."""
        for part in (self.scorer, self.rollouts, self.teachers, self.learners):
            if part is not None:
                try:
                    part.close() if isinstance(part, Scorer) else part.shutdown()
                except Exception as err:  # noqa: BLE001 - tearing down; the placement group goes anyway
                    log.debug("while closing the stage's actors: %s", err)
        self.scorer = self.rollouts = self.teachers = self.learners = None
        if self.pg is not None:
            remove_placement_group(self.pg)
            self.pg = None


def _started(part: _Part | None, what: str, flag: str) -> _Part:
    """``part``, or an error naming the ``StageActors`` flag that left it out."""
    if part is None:
        raise RuntimeError(f"this stage started no {what} (StageActors({flag}))")
    return part
