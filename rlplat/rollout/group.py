"""RolloutGroup: several RolloutWorker actors that split each batch, replaced when they fail.

A worker that dies, stops answering heartbeats (``faults.heartbeat_s``) or misses the phase
deadline is killed, replaced in the same bundle, given the current weights, and its share of the
prompts is generated again with the same seeds; so a lost engine costs one re-generation, never the
step. Restarts are bounded by ``faults.max_rollout_restarts`` for the run.
A prompt that keeps crashing engines is dropped instead (``faults.PromptBudget``), and the
restarts it caused are not charged to the bound.

The group owns its deadlines (``timeouts.generate_s`` for generation, ``timeouts.sync_s`` for
loading weights and sleeping, ``timeouts.actor_start_s`` for starting and replacing engines) and
consults the run's ``FaultInjector`` as its phases start (a testing aid).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup
from typing_extensions import Self

from rlplat.config.schema import FaultsConfig, SamplingConfig, TimeoutsConfig
from rlplat.distributed.placement import PlacementPlan
from rlplat.distributed.waits import (
    HEALTH_GROUPS,
    ActorFailure,
    Call,
    PhaseTimeout,
    arm_faults,
    calls,
    in_bundle,
    wait_all,
    watch,
)
from rlplat.faults import Chunk, FaultInjector, FaultLog, FaultPlan, PromptBudget
from rlplat.rollout.worker import EngineSpec, RolloutWorker
from rlplat.types import Generation, GenerationRequest, Sample, SyncManifest

log = logging.getLogger(__name__)
# How long an abandoned streamed load may take to notice its abort marker (it polls every few ms).
_ABORT_WAIT_S = 30.0


class RolloutRestartLimit(RuntimeError):
    """More rollout-worker restarts than ``faults.max_rollout_restarts`` allows."""


class NoWeightsForReplacement(RolloutRestartLimit):
    """An engine was replaced between two CUDA IPC syncs (``sync.backend=ipc``): the handles died
    with their sync and no other copy of the current weights exists for the new engine. Like the
    restart bound, it ends the run with a failure checkpoint, from which a resume continues."""


class RolloutGroup:
    """Owns the rollout actors; every call has a deadline and heartbeats."""

    def __init__(self, spec: EngineSpec, plan: PlacementPlan, pg: PlacementGroup, cpu_binds: Sequence[str],
                 timeouts: TimeoutsConfig, faults: FaultsConfig, fault_log: FaultLog,
                 injector: FaultInjector | None = None) -> None:
        self.spec = spec
        self.plan = plan
        self.pg = pg
        self.binds = list(cpu_binds)
        self.timeouts = timeouts
        self.cfg = faults
        self.fault_log = fault_log
        self.injector = injector or FaultInjector(FaultPlan(), fault_log)
        self.budget = PromptBudget(faults.prompt_retries, fault_log.dropped_prompts)
        # How a replacement engine gets the current weights: a call on the new worker (None: the
        # weights the engines started from are current). Each load sets it; ``ipc_done`` clears it.
        self._reload: Callable[[Any], Any] | None = None
        self._weights_lost = False
        # The engines' processes start (and import vLLM) now, beside the other actors' start;
        # ``wait_started`` then builds the engines.
        self.workers = [self._spawn(i) for i in range(plan.num_engines)]
        self.infos: list[dict[str, Any]] = []

    def wait_started(self) -> Self:
        """Build every engine and wait until each is ready; returns the group. Call it once the
        learners have started: vLLM sizes its KV cache from the device memory it finds free, which
        must already exclude what colocated learners hold."""
        self.infos = self._start(list(range(len(self.workers))))
        return self

    def _start(self, ranks: Sequence[int]) -> list[dict[str, Any]]:
        """Build the engines of workers ``ranks``; returns their ``info``."""
        workers = [self.workers[i] for i in ranks]
        return wait_all(calls([w.start.remote() for w in workers], workers, [self.names[i] for i in ranks]),
                        "actor_start", self.timeouts.actor_start_s)

    @property
    def names(self) -> list[str]:
        """Human-readable actor names, for errors."""
        return [f"rollout worker {i}" for i in range(len(self.workers))]

    def _spawn(self, i: int) -> Any:
        spec = replace(self.spec, cpu_bind=self.binds[i] if self.spec.device == "cpu" else "auto",
                       bundles=self.plan.engine_bundles[i], worker_gpu_share=self.plan.engine_worker_gpus)
        actor_cls = ray.remote(concurrency_groups=HEALTH_GROUPS)(RolloutWorker)
        return actor_cls.options(
            num_cpus=1, num_gpus=self.plan.engine_gpus,
            scheduling_strategy=in_bundle(self.pg, self.plan.engine_bundles[i][0]),
            max_restarts=0, max_concurrency=2,
        ).remote(spec, i)

    def _replace(self, i: int, failure: ActorFailure | PhaseTimeout) -> None:
        """Kill worker ``i``, start a new one in its bundle and give it the current weights."""
        detect_s = failure.detect_s if isinstance(failure, ActorFailure) else 0.0
        log.warning("replacing rollout worker %d: %s", i, failure)
        self.fault_log.record(failure.phase, self.names[i], str(failure), detect_s, "replaced")
        ray.kill(self.workers[i], no_restart=True)
        if self._weights_lost:
            raise NoWeightsForReplacement(f"rollout worker {i} failed ({failure}) between two CUDA IPC weight syncs, "
                                          "and no copy of the current weights exists for a new engine; resume "
                                          "the run, or use sync.backend=buckets")
        self.workers[i] = self._spawn(i)
        self.infos[i] = self._start([i])[0]
        if self._reload is not None:
            wait_all(calls([self._reload(self.workers[i])], self.workers[i:i + 1], self.names[i:i + 1]), "sync",
                     self.timeouts.actor_start_s, self.cfg.heartbeat_s)

    def _charge(self, restarts: int, reason: str) -> None:
        """Count ``restarts`` against ``faults.max_rollout_restarts``; raises past the bound."""
        self.fault_log.rollout_restarts += restarts
        if restarts and self.fault_log.rollout_restarts > self.cfg.max_rollout_restarts:
            raise RolloutRestartLimit(
                f"{reason}, and the run has now restarted rollout workers {self.fault_log.rollout_restarts} "
                f"times (faults.max_rollout_restarts={self.cfg.max_rollout_restarts})")

    def generate(self, requests: Sequence[GenerationRequest], n: int, sampling: SamplingConfig,
                 interrupt: Callable[[], bool] | None = None) -> Generation:
        """Samples for every request, in order; None for a request whose prompt was dropped.

        ``interrupt`` aborts the wait (``Interrupted``) when it returns True.
        """
        self._arm("generate")
        results: list[list[Sample] | None] = [None] * len(requests)
        live = [i for i, r in enumerate(requests) if r.uid not in self.budget.dropped]
        queue = deque(Chunk(tuple(c)) for c in _split(live, len(self.workers)) if c)
        engine_s = 0.0
        while queue:
            batch = [queue.popleft() for _ in range(min(len(queue), len(self.workers)))]
            refs = [self.workers[w].generate.remote([requests[i] for i in c.idx], n, sampling)
                    for w, c in enumerate(batch)]
            outcomes = watch(calls(refs, self.workers[:len(batch)], self.names[:len(batch)]), "generate",
                             self.timeouts.generate_s, self.cfg.heartbeat_s, interrupt)
            engine_s += max((o.engine_s for o in outcomes if isinstance(o, Generation)), default=0.0)
            for w, (chunk, out) in enumerate(zip(batch, outcomes, strict=True)):
                uids = [requests[i].uid for i in chunk.idx]
                if isinstance(out, Generation):
                    for i, samples in zip(chunk.idx, out.samples, strict=True):
                        results[i] = samples
                    self.budget.succeeded(uids)
                    continue
                self._replace(w, out)
                self.budget.failed(uids)
                queue.extend(self._retry(chunk, uids))
            self._charge(self.budget.take_charged(), "a rollout worker failed while generating")
        if live and all(results[i] is None for i in live):
            raise RolloutRestartLimit("every prompt of the batch crashed the rollout workers: the engines, not the "
                                      "prompts, are failing")
        return Generation(results, engine_s)

    def _retry(self, chunk: Chunk, uids: Sequence[str]) -> list[Chunk]:
        """What to send again after ``chunk`` failed (``PromptBudget.retry``); logs a dropped prompt."""
        again = self.budget.retry(chunk, uids)
        if again:
            return again
        log.warning("prompt %s crashed rollout workers %d times: dropped for the rest of the run (faults.prompt_retries"
                    "=%d)", uids[0], self.budget.crashes[uids[0]], self.cfg.prompt_retries)
        self.fault_log.dropped_prompts.append(uids[0])
        self.fault_log.record("generate", f"prompt {uids[0]}", "crashed rollout workers", 0.0, "dropped")
        return []

    def load_weights(self, manifest: SyncManifest) -> None:
        """Load ``manifest`` into every engine within ``timeouts.sync_s``; an engine that fails is
        replaced (the replacement loads the same manifest) and charged to the restart bound."""
        self.finish_load(manifest, self.start_load(manifest))

    def start_load(self, manifest: SyncManifest) -> list[Call]:
        """Start loading ``manifest`` into every engine and return the calls for ``finish_load``.
        A streamed manifest may be started before the learners have written it."""
        self._arm("sync")
        return calls([w.load_weights.remote(manifest) for w in self.workers], self.workers, self.names)

    def finish_load(self, manifest: SyncManifest, loading: Sequence[Call]) -> None:
        """Wait for ``start_load``'s calls within ``timeouts.sync_s``; replace the engines that failed."""
        self._finish(lambda w: w.load_weights.remote(manifest), loading, manifest.version)

    def load_ipc(self, update_info: dict[str, Any], version: int, nbytes: int) -> None:
        """Load weights ``version`` into every engine through CUDA IPC handles (``rlplat.sync.ipc``),
        within ``timeouts.sync_s``; a failed engine is replaced and loads the same handles. The
        handles live until the learners release them: call ``ipc_done`` then."""
        self._arm("sync")

        def load(w: Any) -> Any:
            return w.load_ipc.remote(update_info, version, nbytes)

        self._finish(load, calls([load(w) for w in self.workers], self.workers, self.names), version)

    def ipc_done(self) -> None:
        """The IPC handles of the last load are gone: a later replacement cannot get the weights."""
        self._reload, self._weights_lost = None, True

    def _finish(self, reload: Callable[[Any], Any], loading: Sequence[Call], version: int) -> None:
        """Wait for ``loading`` within ``timeouts.sync_s``, ``reload`` being how a replacement gets
        this version; replace (and charge) the engines that failed."""
        self._reload, self._weights_lost = reload, False
        outcomes = watch(loading, "sync", self.timeouts.sync_s, self.cfg.heartbeat_s)
        for i, out in enumerate(outcomes):
            if isinstance(out, (ActorFailure, PhaseTimeout)):
                self._replace(i, out)
                self._charge(1, f"rollout worker {i} failed while loading weights version {version}")

    def abandon_load(self, manifest: SyncManifest, loading: Sequence[Call]) -> None:
        """After a failed streamed export: stop the engines' loads at the abort marker (each engine
        writes it on its own node). The engines now hold a mix of versions, so the caller must not
        generate again (it raises the export's failure)."""
        marks = [w.abort_load.remote(manifest.shm_paths) for w in self.workers]
        watch(calls(marks, self.workers, self.names), "sync", _ABORT_WAIT_S)
        watch(loading, "sync", _ABORT_WAIT_S)

    def sleep(self) -> None:
        """GPU colocation: let engines free their memory while learners train."""
        wait_all(calls([w.sleep.remote() for w in self.workers], self.workers, self.names), "sleep",
                 self.timeouts.sync_s, self.cfg.heartbeat_s)

    def wake(self) -> None:
        """After a sync: sleeping engines allocate their KV cache again (awake ones do nothing)."""
        wait_all(calls([w.wake.remote() for w in self.workers], self.workers, self.names), "sync",
                 self.timeouts.sync_s, self.cfg.heartbeat_s)

    def greedy(self, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
        """Greedy completions from worker 0 (weight-sync checks)."""
        out: list[list[int]] = wait_all(calls([self.workers[0].greedy.remote(prompts, max_tokens)], self.workers[:1],
                                              self.names[:1]), "generate", self.timeouts.generate_s,
                                        self.cfg.heartbeat_s)[0]
        return out

    def _arm(self, phase: str) -> None:
        """Arm the engines the run's injected faults name for ``phase`` of this step (testing aid)."""
        arm_faults(self.workers, self.names, self.injector.at(phase, "engine"), phase, self.timeouts.actor_start_s)

    def node_ids(self) -> list[str]:
        """Node id of each engine."""
        return [info["node_id"] for info in self.infos]

    def shutdown(self) -> None:
        """Kill every worker."""
        for w in self.workers:
            ray.kill(w, no_restart=True)


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    """Contiguous, near-equal chunks (order preserved so results can be concatenated)."""
    k, r = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + k + (1 if i < r else 0)
        out.append(items[start:end])
        start = end
    return out


