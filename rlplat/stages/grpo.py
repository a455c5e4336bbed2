"""GRPO stage: the reinforcement-learning main loop (LN §5.1).

Per step: the curriculum picks prompts, vLLM engines sample ``n`` completions per prompt, the
reward pool scores them, advantages are computed per group, the DeepSpeed learners take
``prompts * n / global_batch`` optimizer steps (2 in the paper: 1152 samples, batch 576), and the
new weights are synced to the engines. Every blocking call has a deadline; a checkpoint is written
every ``checkpoint.every`` steps and when SIGTERM/SIGINT arrives.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curricula import Curriculum, PassRateStore, build_curriculum, is_informative
from rlplat.batch import split_for_ranks
from rlplat.distributed.actors import ActorFailure, PhaseTimeout
from rlplat.rollout.group import RolloutRestartLimit
from rlplat.checkpoint import latest_checkpoint, load_driver_state, save_checkpoint
from rlplat.metrics import MetricsLogger, read_metrics, truncate_after
from rlplat.stages.cluster import StageActors
from rlplat.stages.context import StageContext
from rlplat.stages.evaluate import HeldOutEval
from rlplat.stages.grpo_batch import (advantages, make_requests, minibatches, outcomes, rollout_metrics,
                                      train_sequences)
from rlplat.stages.prefilter import curriculum_inputs
from rlplat.stages.prompts import keep_listed, load_prompt_split, tokenize_prompts
from rlplat.stages.report import write_report
from rlplat.stages.signals import StopRequested
from rlplat.sync.coordinator import WeightSync
from rlplat.types import ScoredGroup

log = logging.getLogger(__name__)


class Preempted(RuntimeError):
    """The run stopped on SIGTERM/SIGINT after writing a checkpoint."""


class GRPOStage:
    """Runs GRPO from ``ctx.model_path``; returns the final model directory."""

    name = "grpo"

    def run(self, ctx: StageContext) -> str:
        from transformers import AutoTokenizer

        cfg = ctx.cfg
        self.ctx, self.cfg = ctx, cfg
        self._prompts(AutoTokenizer.from_pretrained(ctx.model_path))
        with StageActors(cfg, ctx.model_path, cfg.learner.lr) as actors, StopRequested() as stop:
            self.actors = actors
            (ctx.run_dir / "placement.json").write_text(json.dumps(actors.placement(), indent=2))
            self.sync = WeightSync(cfg.sync, actors.learners, actors.rollouts, tag=_tag(ctx.run_dir))
            start = self._restore()
            metrics = MetricsLogger(ctx.run_dir, cfg.grpo.total_steps, start)
            try:
                self._loop(start, stop, metrics)
            except (RolloutRestartLimit, PhaseTimeout, ActorFailure) as err:
                self._save_after_failure(err)
                raise
            finally:
                metrics.close()
            final = ctx.run_dir / "final_model"
            actors.learners.save_hf(str(final), cfg.timeouts.checkpoint_s)
        write_report(ctx.run_dir, read_metrics(ctx.run_dir / "metrics.jsonl"))
        return str(final)

    def _loop(self, start: int, stop: StopRequested, metrics: MetricsLogger) -> None:
        """Steps ``start + 1 .. total_steps``; checkpoints every ``checkpoint.every`` and on a signal."""
        cfg = self.cfg
        for step in range(start + 1, cfg.grpo.total_steps + 1):
            # The state a checkpoint would hold if this step failed before training.
            self.boundary: _Boundary | None = _Boundary(step - 1, self.sync.version, self.curriculum.state_dict())
            metrics.log(self._step(step))
            if step % cfg.checkpoint.every == 0 or step == cfg.grpo.total_steps or stop:
                self._checkpoint(step)
            if stop:
                raise Preempted(f"signal {stop.signal}: stopped after step {step} with a checkpoint; "
                                f"continue with resume={self.ctx.run_dir}")

    # ------------------------------------------------------------------------- one step

    def _step(self, step: int) -> dict[str, Any]:
        """One GRPO step; returns its metrics line."""
        t0 = time.perf_counter()
        batch, timing, extra = self._collect(step)
        t1 = time.perf_counter()
        self.boundary = None  # the learners change from here on
        train = self._train(batch, step)
        t2 = time.perf_counter()
        report = self.sync.sync(self.cfg.timeouts.sync_s)
        t3 = time.perf_counter()
        roll = rollout_metrics(batch)
        return {
            "step": step, **roll, "kl": train["kl"], "entropy": train["entropy"],
            "time/step_s": t3 - t0, "time/rollout_s": timing["rollout"], "time/reward_s": timing["reward"],
            "time/train_s": t2 - t1, "time/sync_s": t3 - t2,
            "tokens_per_s": roll["tokens/generated"] / max(timing["rollout"], 1e-9),
            "sync/bytes": report.nbytes, "sync/object_store_engines": report.object_store_engines,
            "weights/version": report.version,
            "weights/staleness": max(report.version - 1 - s.sample.weights_version
                                     for g in batch for s in g.samples),
            "faults/rollout_restarts": self.actors.rollouts.restarts,
            **{k: v for k, v in train.items() if k not in ("kl", "entropy")},
            **extra, **self.curriculum.metrics(),
            **self.evaluation.metrics(step, self.actors.rollouts, self.actors.scorer),
        }

    def _collect(self, step: int) -> tuple[list[ScoredGroup], dict[str, float], dict[str, float]]:
        """Generate and score this step's groups; with dynamic sampling, refill dropped groups."""
        want = self.cfg.grpo.prompts_per_step
        timing = {"rollout": 0.0, "reward": 0.0}
        groups, pool = self._generate_and_score(self.curriculum.next_batch(want), step, 0, timing)
        seen = list(groups)
        if self.cfg.curriculum.dynamic_sampling:
            kept = [g for g in groups if is_informative(_outcome(g))]
            dropped = [g for g in groups if not is_informative(_outcome(g))]
            rounds = 0
            while len(kept) < want and rounds < self.cfg.curriculum.dynamic_max_rounds:
                rounds += 1
                more, _ = self._generate_and_score(
                    self.curriculum.next_batch(want - len(kept), refill=True), step, rounds, timing)
                seen += more
                kept += [g for g in more if is_informative(_outcome(g))]
                dropped += [g for g in more if not is_informative(_outcome(g))]
            # Zero-advantage groups fill any shortfall: they add no policy gradient but keep the
            # batch arithmetic (global_batch) intact.
            groups = (kept + dropped)[:want]
            pool["curriculum/dynamic_dropped_frac"] = len(dropped) / len(seen)
            pool["curriculum/dynamic_rounds"] = float(rounds)
        self.curriculum.observe(outcomes(seen))
        return groups, timing, pool

    def _generate_and_score(self, idx: list[int], step: int, attempt: int,
                            timing: dict[str, float]) -> tuple[list[ScoredGroup], dict[str, float]]:
        cfg, a = self.cfg, self.actors
        items = [self.prompts[i] for i in idx]
        requests = make_requests(items, [self.token_ids[i] for i in idx], cfg.seed, step, attempt)
        t0 = time.perf_counter()
        samples = a.rollouts.generate(requests, cfg.grpo.samples_per_prompt, cfg.rollout.sampling,
                                      cfg.timeouts.generate_s)
        t1 = time.perf_counter()
        scored, pool = a.scorer.score(items, samples, cfg.timeouts.reward_s)
        timing["rollout"] += t1 - t0
        timing["reward"] += time.perf_counter() - t1
        return scored, pool

    def _train(self, batch: list[ScoredGroup], step: int) -> dict[str, float]:
        """Advantages, then ``samples / global_batch`` optimizer steps; returns averaged stats."""
        cfg, learners = self.cfg, self.actors.learners
        if cfg.cluster.device == "gpu" and cfg.rollout.sleep_between_phases:
            self.actors.rollouts.sleep(cfg.timeouts.sync_s)
        seqs = train_sequences(batch, advantages(batch, cfg.grpo.advantage))
        stats = [learners.train_step(split_for_ranks(mb, learners.world_size), cfg.timeouts.train_s)
                 for mb in minibatches(seqs, cfg.grpo.global_batch, cfg.seed, step)]
        out = {k: statistics.fmean(s[k] for s in stats) for k in stats[0]}
        # The first optimizer step sees the weights that generated the samples: its ratio measures
        # the engine/learner numerical mismatch (FP8 vs BF16 on GPU, kernels on CPU).
        out["mismatch/approx_kl"] = stats[0]["approx_kl"]
        out["optimizer_steps"] = float(len(stats))
        return out

    # ------------------------------------------------------------------------- state

    def _prompts(self, tokenizer: Any) -> None:
        """Training prompts, held-out evaluation prompts, and the curriculum over the former."""
        cfg = self.cfg
        # The config's files, else what a prefilter stage of this pipeline left: train only on the
        # prompts it kept and seed the curriculum with its pass rates.
        inputs = curriculum_inputs(cfg, self.ctx.run_dir)
        split = load_prompt_split(cfg, tokenizer)
        self.prompts = keep_listed(split.train, inputs.keep_uids)
        max_prompt = cfg.rollout.max_model_len - cfg.rollout.sampling.max_new_tokens
        self.token_ids = tokenize_prompts(self.prompts, tokenizer, max_prompt)
        self.evaluation = HeldOutEval(cfg, split.held_out, tokenize_prompts(split.held_out, tokenizer, max_prompt))
        self.curriculum = self._curriculum(inputs.pass_rate_table)

    def _curriculum(self, pass_rate_table: str | None) -> Curriculum:
        c = self.cfg.curriculum
        store = PassRateStore.from_table(pass_rate_table) if pass_rate_table else None
        return build_curriculum(c.name, uids=[p.uid for p in self.prompts], seed=self.cfg.seed,
                                total_steps=self.cfg.grpo.total_steps, store=store, **c.options)

    def _restore(self) -> int:
        """Continue from the latest complete checkpoint (resume) or publish version 1; returns the step."""
        run_dir, t = self.ctx.run_dir, self.cfg.timeouts
        found = latest_checkpoint(run_dir) if self.ctx.resume else None
        if found is None:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
            self.sync.sync(t.sync_s)
            return 0
        step, path = found
        state = load_driver_state(path)
        self.actors.learners.load(str(path / "learner"), t.checkpoint_s)
        self.curriculum.load_state_dict(state["curriculum"])
        self.sync.sync(t.sync_s, version=state["weights_version"])
        truncate_after(run_dir / "metrics.jsonl", step)
        log.info("resumed from %s (step %d)", path, step)
        return step

    def _checkpoint(self, step: int) -> Path:
        return self._save(_Boundary(step, self.sync.version, self.curriculum.state_dict()))

    def _save(self, b: _Boundary) -> Path:
        state = {"step": b.step, "weights_version": b.weights_version, "curriculum": b.curriculum}
        learners, timeout = self.actors.learners, self.cfg.timeouts.checkpoint_s
        return save_checkpoint(self.ctx.run_dir, b.step, lambda d: learners.save(d, timeout), state,
                               self.cfg.checkpoint.keep)

    def _save_after_failure(self, err: Exception) -> None:
        """After an engine failure before training started, checkpoint the last finished step so
        that the run can resume without losing it (learner failures leave the last periodic one)."""
        b = getattr(self, "boundary", None)
        last = latest_checkpoint(self.ctx.run_dir)
        if b is None or b.step == 0 or (last is not None and last[0] >= b.step):
            return
        try:
            path = self._save(b)
            log.warning("%s; saved checkpoint %s before stopping", err, path)
        except Exception as save_err:  # noqa: BLE001 - report the original failure, not this one
            log.warning("could not checkpoint after the failure: %s", save_err)


@dataclass(frozen=True)
class _Boundary:
    """Driver state between two steps: what a checkpoint of ``step`` holds."""

    step: int
    weights_version: int
    curriculum: dict[str, Any]


def _outcome(g: ScoredGroup) -> Any:
    return outcomes([g])[0]


def _tag(run_dir: Path) -> str:
    """Run-unique tag for /dev/shm file names (two runs on one node must not collide)."""
    import hashlib

    return hashlib.blake2b(str(run_dir.resolve()).encode(), digest_size=4).hexdigest()
