"""RolloutGroup: several RolloutWorker actors that split each batch, restarted when they die.

A worker that dies or misses the generation deadline is killed, replaced in the same bundle,
given the current weights, and its share of prompts is sent again; so a lost engine costs one
re-generation, never the step (anchors.md (d) 8). Restarts are bounded by
``faults.max_rollout_restarts``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup

from rlplat.config.schema import SamplingConfig
from rlplat.distributed.placement import PlacementPlan
from rlplat.distributed.waits import in_bundle, wait_all
from rlplat.rollout.worker import EngineSpec, RolloutWorker
from rlplat.types import GenerationRequest, Sample, SyncManifest

log = logging.getLogger(__name__)


class RolloutRestartLimit(RuntimeError):
    """More rollout-worker restarts than ``faults.max_rollout_restarts`` allows."""


class RolloutGroup:
    """Owns the rollout actors; every call has a deadline."""

    def __init__(self, spec: EngineSpec, plan: PlacementPlan, pg: PlacementGroup,
                 cpu_binds: Sequence[str], start_timeout_s: float, max_restarts: int) -> None:
        self.spec = spec
        self.plan = plan
        self.pg = pg
        self.binds = list(cpu_binds)
        self.start_timeout_s = start_timeout_s
        self.max_restarts = max_restarts
        self.restarts = 0
        self.manifest: SyncManifest | None = None
        self.workers = [self._spawn(i) for i in range(plan.num_engines)]
        self.infos = wait_all([w.info.remote() for w in self.workers], self.names, "actor_start",
                              start_timeout_s)

    @property
    def names(self) -> list[str]:
        """Human-readable actor names, for errors."""
        return [f"rollout worker {i}" for i in range(len(self.workers))]

    def _spawn(self, i: int) -> Any:
        spec = replace(self.spec, cpu_bind=self.binds[i] if self.spec.device == "cpu" else "auto",
                       bundles=self.plan.engine_bundles[i], worker_gpu_share=self.plan.engine_worker_gpus)
        actor_cls = ray.remote(RolloutWorker)
        return actor_cls.options(
            num_cpus=1, num_gpus=self.plan.engine_gpus,
            scheduling_strategy=in_bundle(self.pg, self.plan.engine_bundles[i][0]),
            max_restarts=0, max_concurrency=2,
        ).remote(spec, i)

    def restart(self, i: int, reason: str) -> None:
        """Replace worker ``i`` (killing it if alive) and give it the current weights."""
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise RolloutRestartLimit(
                f"rollout worker {i} failed ({reason}) and the run already restarted rollout "
                f"workers {self.restarts - 1} times (faults.max_rollout_restarts={self.max_restarts})")
        log.warning("restarting rollout worker %d: %s", i, reason)
        ray.kill(self.workers[i], no_restart=True)
        self.workers[i] = self._spawn(i)
        self.infos[i] = wait_all([self.workers[i].info.remote()], [self.names[i]], "actor_start",
                                 self.start_timeout_s)[0]
        if self.manifest is not None:
            wait_all([self.workers[i].load_weights.remote(self.manifest)], [self.names[i]], "sync",
                     self.start_timeout_s)

    def generate(self, requests: Sequence[GenerationRequest], n: int, sampling: SamplingConfig,
                 timeout_s: float) -> list[list[Sample]]:
        """Samples for every request, in order; a lost worker's share is regenerated elsewhere."""
        chunks = _split(list(requests), len(self.workers))
        results: list[list[list[Sample]] | None] = [None if c else [] for c in chunks]
        while any(r is None for r in results):
            todo = [i for i, r in enumerate(results) if r is None]
            refs = [self.workers[i].generate.remote(chunks[i], n, sampling) for i in todo]
            for i, out in zip(todo, self._collect(refs, todo, timeout_s)):
                results[i] = out
        return [group for chunk in results for group in chunk or []]

    def _collect(self, refs: list[Any], idx: list[int], timeout_s: float, phase: str = "generate") -> list[Any]:
        """Wait for each ref; restart the workers that died or timed out (their result is None)."""
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        out: list[Any] = []
        for ref, i in zip(refs, idx):
            if ref in pending:
                self.restart(i, f"no {phase} result within {timeout_s:g} s (timeouts.{phase}_s)")
                out.append(None)
                continue
            try:
                out.append(ray.get(ref))
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
                self.restart(i, f"{type(err).__name__}: {str(err).splitlines()[-1] if str(err) else ''}")
                out.append(None)
        return out

    def load_weights(self, manifest: SyncManifest, timeout_s: float) -> None:
        """Load ``manifest`` into every engine within ``timeout_s``; an engine that dies or hangs
        is replaced (the replacement loads the same manifest)."""
        self.manifest = manifest
        idx = list(range(len(self.workers)))
        refs = [w.load_weights.remote(manifest) for w in self.workers]
        self._collect(refs, idx, timeout_s, phase="sync")

    def sleep(self, timeout_s: float) -> None:
        """GPU colocation: let engines free their memory while learners train."""
        wait_all([w.sleep.remote() for w in self.workers], self.names, "sleep", timeout_s)

    def greedy(self, prompts: list[list[int]], max_tokens: int, timeout_s: float) -> list[list[int]]:
        """Greedy completions from worker 0 (weight-sync checks)."""
        return wait_all([self.workers[0].greedy.remote(prompts, max_tokens)], self.names[:1],
                        "generate", timeout_s)[0]

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


