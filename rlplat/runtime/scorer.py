"""RewardScorer: the reward pool as a Ray actor beside the learners.

The actor owns a ``rewards.RewardPool`` of killable worker processes: a verifier that hangs costs
its sample a timeout (score 0, ``timed_out``), never the run. Model outputs are untrusted: they are
scored only in those worker processes (and code only inside the sandbox they start), never in the
driver. The driver reaches the actor with a deadline and heartbeats like every other actor; an actor
that dies or stops answering is replaced and the batch scored again (scoring is a pure function of
the samples), at most ``faults.max_reward_restarts`` times in a run.

Counters (``reward/*`` step metrics) accumulate per tally: training scores into the default one,
which the loop reads and resets once per step (``stats_and_reset``); evaluations score into a tally
of their own, so that scoring them between a step's batch and its line loses nobody's counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import ray
from typing_extensions import Self

from rewards import RewardInput, RewardOutput
from rewards.pool import DEFAULT_TALLY
from rlplat.config.schema import FaultsConfig, RewardConfig, TimeoutsConfig
from rlplat.distributed.waits import HEALTH_GROUPS, ActorFailure, PhaseTimeout, arm_faults, calls, wait_all, watch
from rlplat.faults import ArmedFaults, FaultInjector, FaultKind, FaultLog, FaultPlan
from rlplat.telemetry import LATENCY_BOUNDARIES, MetricTags, count, observe
from rlplat.types import GenerationRequest, PromptItem, Sample, ScoredGroup, ScoredSample

log = logging.getLogger(__name__)
_NAME = "reward scorer"


class RewardRestartLimit(RuntimeError):
    """More reward-scorer restarts than ``faults.max_reward_restarts`` allows."""


def reward_spec(cfg: RewardConfig) -> dict[str, Any]:
    """The plain mapping ``rewards.build_reward`` takes (picklable into pool workers)."""
    return {"components": dict(cfg.components), "accuracy": cfg.accuracy,
            "modules": list(cfg.modules), "options": {k: dict(v) for k, v in cfg.options.items()}}


class RewardScorer:
    """Ray actor wrapping ``rewards.RewardPool``."""

    def __init__(self, cfg: RewardConfig, tags: MetricTags | None = None) -> None:
        from rewards import RewardPool

        self.tags = tags
        self.faults = ArmedFaults(_NAME)
        self.pool = RewardPool(reward_spec(cfg), num_workers=cfg.num_workers, timeout_s=cfg.timeout_s,
                               on_latency=None if tags is None else self._latency)

    def arm_fault(self, phase: str, kind: FaultKind) -> None:
        """Testing aid (``faults.inject``): fail with ``kind`` at the start of the next ``phase`` call."""
        self.faults.arm(phase, kind)

    def score(self, inputs: list[RewardInput], tally: str = DEFAULT_TALLY) -> list[RewardOutput]:
        """Outputs in input order; the pool counts them in ``tally``."""
        self.faults.fire("score")
        outs = self.pool.score_batch(inputs, tally=tally)
        if self.tags is not None:
            count("rlplat_verifier_timeouts", sum(o.timed_out for o in outs), self.tags, "samples whose verifier timed out")
            count("rlplat_verifier_errors", sum(o.error is not None for o in outs), self.tags,
                  "samples whose scoring failed")
            count("rlplat_verifier_samples", len(outs), self.tags, "samples scored")
        return outs

    def _latency(self, seconds: float) -> None:
        """The pool's per-sample verifier seconds, into a histogram."""
        assert self.tags is not None
        observe("rlplat_verifier_latency_seconds", [seconds], self.tags, LATENCY_BOUNDARIES,
                "seconds the verifier took per sample, observed by the reward scorer")

    def heartbeat(self) -> float:
        """Liveness: answered from the actor's ``health`` concurrency group, beside any long call."""
        import time

        return time.time()

    def stats_and_reset(self, tally: str = DEFAULT_TALLY) -> dict[str, float]:
        """The pool's counters (``reward/...``) of ``tally`` since its last reset."""
        return self.pool.stats_and_reset(tally)

    def close(self) -> None:
        """Stop the pool's processes."""
        self.pool.close()


class Scorer:
    """Driver-side handle: turns generated groups into ``ScoredGroup``s within a deadline."""

    def __init__(self, cfg: RewardConfig, faults: FaultsConfig | None = None, fault_log: FaultLog | None = None,
                 timeouts: TimeoutsConfig | None = None, tags: MetricTags | None = None,
                 injector: FaultInjector | None = None) -> None:
        self.cfg = cfg
        self.tags = tags
        self.faults = faults or FaultsConfig()
        self.fault_log = fault_log or FaultLog()
        self.timeouts = timeouts or TimeoutsConfig()
        self.injector = injector or FaultInjector(FaultPlan(), self.fault_log)
        self.actor = self._spawn()

    def _spawn(self) -> Any:
        """A new scorer actor, starting (``wait_started`` waits for it)."""
        return ray.remote(concurrency_groups=HEALTH_GROUPS)(RewardScorer).options(num_cpus=0, max_restarts=0).remote(
            self.cfg, self.tags)

    def wait_started(self) -> Self:
        """Wait for the actor's first answer, without heartbeats (an actor answers nothing until its
        constructor, which starts the pool's processes, returns): on a loaded machine that takes
        longer than ``faults.heartbeat_s``, and a scorer still starting is not frozen. Returns self."""
        wait_all(calls([self.actor.heartbeat.remote()], [self.actor], [_NAME]), "actor_start", self.timeouts.actor_start_s)
        return self

    def score(self, prompts: Sequence[PromptItem], requests: Sequence[GenerationRequest],
              groups: Sequence[Sequence[Sample]], interrupt: Callable[[], bool] | None = None,
              tally: str = DEFAULT_TALLY) -> list[ScoredGroup]:
        """Score every sample of every group (``prompts[i]`` was sent as ``requests[i]`` and produced
        ``groups[i]``) within ``timeouts.reward_s``, counted in ``tally``; ``interrupt`` aborts the wait."""
        inputs = reward_inputs(prompts, groups)
        arm_faults([self.actor], [_NAME], self.injector.at("score", "reward"), "score", self.timeouts.actor_start_s)
        while True:
            out = watch(calls([self.actor.score.remote(inputs, tally)], [self.actor], [_NAME]), "reward",
                        self.timeouts.reward_s, self.faults.heartbeat_s, interrupt)[0]
            if not isinstance(out, (ActorFailure, PhaseTimeout)):
                break
            self._replace(out)
        return scored_groups(prompts, requests, groups, out)

    def _replace(self, failure: ActorFailure | PhaseTimeout) -> None:
        """A new scorer actor in place of the failed one (its pool's counters are lost)."""
        detect_s = failure.detect_s if isinstance(failure, ActorFailure) else 0.0
        self.fault_log.record("reward", _NAME, str(failure), detect_s, "replaced")
        self.fault_log.reward_restarts += 1
        if self.fault_log.reward_restarts > self.faults.max_reward_restarts:
            raise RewardRestartLimit(f"{failure}; the run has now restarted the reward scorer "
                                     f"{self.fault_log.reward_restarts} times (faults.max_reward_restarts="
                                     f"{self.faults.max_reward_restarts})")
        log.warning("replacing the reward scorer: %s", failure)
        ray.kill(self.actor, no_restart=True)
        self.actor = self._spawn()
        self.wait_started()

    def stats_and_reset(self, tally: str = DEFAULT_TALLY) -> dict[str, float]:
        """``tally``'s counters since its last reset: every sample scored into it in between,
        whichever call scored it (a step's refill rounds included); then starts it again at zero."""
        stats: dict[str, float] = wait_all(calls([self.actor.stats_and_reset.remote(tally)], [self.actor], [_NAME]),
                                           "reward", self.timeouts.reward_s, self.faults.heartbeat_s)[0]
        return stats

    def close(self) -> None:
        """Stop the actor's pool and the actor."""
        try:
            ray.get(self.actor.close.remote(), timeout=30)
        finally:
            ray.kill(self.actor)


def reward_inputs(prompts: Sequence[PromptItem], groups: Sequence[Sequence[Sample]]) -> list[RewardInput]:
    """What the verifiers see of every sample of every group, flattened in order."""
    return [RewardInput(prompt=p.question, completion=s.text, reference=p.reference,
                        metadata={**p.metadata, "system": p.system})
            for p, g in zip(prompts, groups, strict=True) for s in g]


def scored_groups(prompts: Sequence[PromptItem], requests: Sequence[GenerationRequest],
                  groups: Sequence[Sequence[Sample]], outputs: Sequence[RewardOutput]) -> list[ScoredGroup]:
    """``groups`` with the verifiers' ``outputs`` (``reward_inputs`` order) as ``ScoredGroup``s."""
    it = iter(outputs)
    return [ScoredGroup(p, r.prompt_token_ids, tuple(_scored(s, next(it)) for s in g))
            for p, r, g in zip(prompts, requests, groups, strict=True)]


def _scored(sample: Sample, out: RewardOutput) -> ScoredSample:
    details = {k: float(v) for k, v in (out.details or {}).items() if isinstance(v, (int, float))
               and not isinstance(v, bool)}
    return ScoredSample(sample, float(out.score), bool(out.correct), bool(out.timed_out), details)
