"""GRPO stage: the reinforcement-learning main loop (LN §5.1).

Per step (``GRPOLoop.step``, read it top to bottom): the curriculum samples prompts, the vLLM
engines generate ``n`` completions per prompt, the reward pool scores them, dynamic sampling refills
groups that carry no signal, the curriculum observes every scored group, advantages are computed per
group, the DeepSpeed learners take ``prompts * n / global_batch`` optimizer steps (2 in the paper:
1152 samples, batch 576), the new weights are synced to the engines, the held-out set is evaluated,
the metrics line is logged, and a checkpoint of the ``RunState`` is written every
``checkpoint.every`` steps and when SIGTERM/SIGINT arrives. Every blocking call has a deadline.

Asynchronous GRPO (``grpo.async.max_staleness=K > 0``; ``rlplat.runtime.lookahead``): the next
step's prompts are drawn and handed to a background thread before training, so the engines
generate and the reward pool scores step k + 1 while the learners train step k; the step then waits
for that batch and syncs when the next samples would otherwise lag the learners by more than K.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from curricula import (
    Curriculum,
    PassRateStore,
    build_curriculum,
    dynamic_dropped_frac,
    dynamic_sampling_metrics,
    fill_batch,
    split_informative,
)
from rlplat.algo.batching import split_for_ranks
from rlplat.algo.grpo import advantages, minibatches, rollout_metrics, staleness, train_sequences
from rlplat.algo.stats import reduce_train_step
from rlplat.checkpoint import latest_checkpoint, load_run_state, save_checkpoint
from rlplat.config.schema import Config
from rlplat.distributed.waits import ActorFailure, Interrupted, PhaseTimeout
from rlplat.faults import PromptsExhausted
from rlplat.metrics import MetricsLogger, read_metrics, truncate_after
from rlplat.models.hf import copy_tokenizer
from rlplat.report import write_summary
from rlplat.report.document import write_run_report
from rlplat.rollout.group import RolloutRestartLimit
from rlplat.runtime.evaluation import HeldOutEval
from rlplat.runtime.handoff import hand_back, take_device
from rlplat.runtime.ledger import RunRecords, StepLedger
from rlplat.runtime.lookahead import Lookahead, groups_from_state
from rlplat.runtime.pass_rates import shared_store
from rlplat.runtime.precision import MismatchGuardStop, PrecisionGuard, fp8_rollouts
from rlplat.runtime.prompts import PromptSet, load_prompt_sets
from rlplat.runtime.protocols import LoopParts, SyncReport
from rlplat.runtime.scorer import RewardRestartLimit
from rlplat.runtime.signals import Preempted, StopRequested
from rlplat.runtime.stage_actors import StageActors
from rlplat.runtime.timing import PhaseTimer
from rlplat.runtime.toggle_eval import both_modes, toggle_metrics
from rlplat.stages.base import KEPT_UIDS, PASS_RATE_TABLE, StageContext, StageManifest
from rlplat.telemetry import MetricTags, run_tags
from rlplat.types import ScoredGroup, TrainSequence, TrainShard

log = logging.getLogger(__name__)
# Replacement draws for dropped prompts get their own sampling seeds (attempt numbers) and are
# bounded, so a dataset full of bad prompts ends in an error instead of a loop.
_REPLACEMENT_ATTEMPTS = 1000
_MAX_DRAWS = 3 * _REPLACEMENT_ATTEMPTS


class GRPOStage:
    """Runs GRPO from ``ctx.model_path``; its manifest names the final model directory."""

    name = "grpo"
    config_sections = ("seed", "model", "learner", "cluster", "rollout", "reward", "grpo", "data", "curriculum",
                       "sync", "checkpoint")
    starts_engines = True  # it samples with the rollout engines (rlplat.stages.checks)

    def preflight(self, cfg: Config) -> None:
        """Before Ray (``rlplat.stages.checks``): every prompt fits the engines' context."""
        from rlplat.stages.checks import check_prompts_fit

        check_prompts_fit(cfg)

    def run(self, ctx: StageContext) -> StageManifest:
        from transformers import AutoTokenizer

        cfg = ctx.cfg
        # The config's files, else what an earlier stage of this pipeline left (a prefilter):
        # train only on the prompts it kept and start the curriculum from its pass rates.
        keep_uids = cfg.data.keep_uids or ctx.artifact(KEPT_UIDS)
        table = cfg.curriculum.pass_rate_table or ctx.artifact(PASS_RATE_TABLE)
        tokenizer = AutoTokenizer.from_pretrained(ctx.model_path)
        train, held_out = load_prompt_sets(cfg, tokenizer, keep_uids)
        shared = shared_store(ctx.run_dir.name) if cfg.curriculum.shared_store else None
        curriculum = make_curriculum(cfg, train.uids, table, shared)
        records = RunRecords.restored(ctx.run_dir, ctx.resume)
        faults = records.faults
        faults.dropped_prompts += [u for u in train.dropped if u not in faults.dropped_prompts]
        final = ctx.run_dir / "final_model"
        tags = run_tags(ctx.run_dir, cfg.experiment, self.name)
        with StageActors(cfg, ctx.model_path, cfg.learner.lr, fault_log=faults, tags=tags) as actors, \
                StopRequested() as stop:
            (ctx.run_dir / "placement.json").write_text(json.dumps(actors.placement(), indent=2))
            evaluation = HeldOutEval(cfg, held_out)
            parts = actors.loop_parts(run_tag(ctx.run_dir), fp8_rollouts(cfg, records.precision))
            GRPOLoop(ctx, parts, train, evaluation, curriculum, stop, records, shared, tags).run()
            metrics = {}
            if cfg.grpo.toggle_eval and evaluation.items:
                # The engines hold the last step's weights (every step ends with a sync).
                metrics = toggle_metrics(cfg, actors.rollout_group, actors.reward_scorer,
                                         both_modes(evaluation.items, tokenizer), tokenizer)
            actors.learner_group.save_hf(str(final))
        copy_tokenizer(Path(ctx.model_path), final)
        rows = read_metrics(ctx.run_dir / "metrics.jsonl")
        write_summary(ctx.run_dir, rows)
        write_run_report(ctx.run_dir)
        last_eval = [r["eval/pass_rate"] for r in rows if "eval/pass_rate" in r]
        metrics.update({"pass_rate": rows[-1]["pass_rate"]} if rows else {})
        metrics.update({"eval/pass_rate": last_eval[-1]} if last_eval else {})
        return StageManifest(self.name, str(final), ctx.model_path, metrics=metrics)


def zero_advantage_frac(groups: Sequence[ScoredGroup]) -> float:
    """Share of ``groups`` whose samples were all rewarded alike (zero GRPO advantage)."""
    kept, dropped = split_informative(groups, outcome_of=ScoredGroup.outcome)
    return dynamic_dropped_frac(kept, dropped)


def make_curriculum(cfg: Config, uids: Sequence[str], pass_rate_table: str | None, shared: Any = None) -> Curriculum:
    """The configured curriculum over ``uids``, its store seeded from the shared store actor when
    it holds rows (``curriculum.shared_store``), else from a pass-rate table if given."""
    import ray

    c = cfg.curriculum
    rows = ray.get(shared.table_rows.remote(), timeout=cfg.timeouts.actor_start_s) if shared is not None else []
    if rows:
        log.info("curriculum: store seeded from the shared store (%d prompts)", len(rows))
    store = (PassRateStore.from_rows(rows, source="shared store") if rows else
             PassRateStore.from_table(pass_rate_table) if pass_rate_table else None)
    return build_curriculum(c.name, uids=list(uids), seed=cfg.seed, total_steps=cfg.grpo.total_steps,
                            store=store, **c.options)


class GRPOLoop:
    """GRPO over the parts it is given (``LoopParts``: Ray actor groups in production, in-process
    fakes in ``tests/loop``). ``ledger`` says where the run stands after the last finished step."""

    def __init__(self, ctx: StageContext, parts: LoopParts, prompts: PromptSet, evaluation: HeldOutEval,
                 curriculum: Curriculum, stop: StopRequested, records: RunRecords, shared: Any = None,
                 tags: MetricTags | None = None) -> None:
        self.cfg, self.run_dir, self.stop, self.shared = ctx.cfg, ctx.run_dir, stop, shared
        self.learners, self.rollouts, self.scorer = parts.learners, parts.rollouts, parts.scorer
        self.weight_sync = parts.weight_sync
        self.prompts, self.evaluation, self.curriculum = prompts, evaluation, curriculum
        self.fault_log = records.faults
        self.precision = PrecisionGuard(self.cfg, self.weight_sync, records.precision, records.faults)
        self.ahead = Lookahead()
        self.ledger = self._restore() if ctx.resume else self._fresh()
        self.metrics = MetricsLogger(self.run_dir, GRPOStage.name, self.cfg.grpo.total_steps, self.ledger.step,
                                     settings=self.cfg.metrics, progress=self.cfg.progress, tags=tags,
                                     config=asdict(self.cfg))

    def _fresh(self) -> StepLedger:
        """A new run's ledger; FP8 engines get the initial weights FP8-rounded (version 0 again)."""
        ledger = StepLedger.fresh(self.curriculum.state_dict())
        if self.weight_sync.fp8:
            ledger.synced(self.sync_between_steps(0))
        return ledger

    def run(self) -> None:
        """Steps ``ledger.step + 1 .. total_steps``; checkpoints every ``checkpoint.every`` and on a signal."""
        cfg = self.cfg
        try:
            for step in range(self.ledger.step + 1, cfg.grpo.total_steps + 1):
                self.step(step)
                if step % cfg.checkpoint.every == 0 or step == cfg.grpo.total_steps or self.stop:
                    self.checkpoint()
                if self.stop:
                    raise Preempted(f"signal {self.stop.signal}: stopped after step {step} with a checkpoint; "
                                    f"continue with resume={self.run_dir}")
        except Interrupted as err:
            raise self._preempted(err) from err
        except (RolloutRestartLimit, RewardRestartLimit, PhaseTimeout, ActorFailure, MismatchGuardStop,
                PromptsExhausted) as err:
            self._checkpoint_after_failure(err)
            raise
        finally:
            self.ahead.close()
            self.metrics.close()

    def step(self, step: int) -> None:
        """One GRPO step: generate, score, refill, observe, train, sync, evaluate, log."""
        cfg, g, timer = self.cfg, self.cfg.grpo, PhaseTimer()
        self.fault_log.begin(step)
        groups = self.take_ahead(step, timer) or self.generate_and_score(
            self.curriculum.next_batch(g.prompts_per_step), step, 0, timer)
        # The share of the drawn prompts whose group carries no signal (every sample rewarded alike),
        # before dynamic sampling replaces them: what a curriculum is meant to lower.
        seen, dynamic = list(groups), {"curriculum/zero_advantage_frac": zero_advantage_frac(groups)}
        if cfg.curriculum.dynamic_sampling:
            groups, seen, refilled = self.refill(groups, step, timer)
            dynamic.update(refilled)
        self.curriculum.observe([group.outcome() for group in seen])
        if self.shared is not None:  # fire and forget: other drivers read it, this loop never waits
            self.shared.update.remote([(g.uid, g.n, g.successes) for g in (group.outcome() for group in seen)])
        reward_counters = self.scorer.stats_and_reset()
        seqs = train_sequences(groups, advantages(groups, g.advantage))
        if g.async_.max_staleness and step < g.total_steps and not self.stop:
            self.submit_ahead(step + 1)  # generated and scored while the learners train below
        trained = self.ledger.start_update()
        with timer.phase("train"):
            train = self.train(seqs, step, staleness(groups, trained))
        self.ledger.finish_update(step, self.curriculum.state_dict())
        with timer.phase("rollout_wait"):
            self.ahead.wait()  # the engines must be idle before they load weights
        extra = {**reward_counters, **dynamic, **self.curriculum.metrics(), **self.precision.metrics()}
        with timer.phase("sync"):
            sync = self.sync(step, groups, timer, train, extra) if self.sync_due(step) else self.no_sync()
            train.update(self.hand_back())
        timer.stop()  # the step's time excludes evaluation (``time/eval_s``)
        evaluation = self.evaluation.run(self.rollouts, self.scorer) if self.evaluation.due(step) else {}
        self.metrics.log(step_line(step, groups, timer, train, sync, trained,
                                   {**extra, **self.fault_log.metrics(), **evaluation}))
        self.precision.after_step(train)

    def submit_ahead(self, step: int) -> None:
        """Draw ``step``'s prompts now and generate and score them in the background (``grpo.async``)."""
        idx = self.curriculum.next_batch(self.cfg.grpo.prompts_per_step)

        def work(timer: PhaseTimer) -> list[ScoredGroup]:
            self.fault_log.begin(step)  # the lookahead thread works for the next step
            return self.generate_and_score(idx, step, 0, timer, refill=False)

        self.ahead.submit(step, work)

    def take_ahead(self, step: int, timer: PhaseTimer) -> list[ScoredGroup] | None:
        """The batch generated ahead for ``step`` (None: none), its rollout and reward seconds added to
        ``timer``, and prompts dropped in flight replaced by fresh draws generated now."""
        groups = self.ahead.take(step, timer)
        if groups is None:
            return None
        missing = self.cfg.grpo.prompts_per_step - len(groups)
        if missing:
            groups += self.generate_and_score(self.curriculum.next_batch(missing, refill=True), step,
                                              _REPLACEMENT_ATTEMPTS, timer)
        return groups

    def sync_due(self, step: int) -> bool:
        """Whether this step ends with a sync: ``StepLedger.sync_due``, and always before a
        checkpoint (a resume loads the learners' weights into the engines), a held-out evaluation
        and the end of the run (both read the engines' weights as the step's policy)."""
        cfg = self.cfg
        forced = step % cfg.checkpoint.every == 0 or step == cfg.grpo.total_steps or self.evaluation.due(step)
        return forced or bool(self.stop) or self.ledger.sync_due(cfg.grpo.async_.max_staleness)

    def no_sync(self) -> SyncReport:
        """The report of a step that kept the engines' weights (``grpo.async.max_staleness > 1``)."""
        return SyncReport(self.ledger.engine_version, 0.0, 0, 0, 0)

    def generate_and_score(self, idx: Sequence[int], step: int, attempt: int, timer: PhaseTimer,
                           refill: bool = True) -> list[ScoredGroup]:
        """``grpo.samples_per_prompt`` scored samples for each prompt at ``idx``; with ``refill``,
        prompts dropped for crashing engines are replaced by fresh draws of the curriculum, at most
        ``_MAX_DRAWS`` attempts deep (then ``PromptsExhausted``)."""
        cfg, stop = self.cfg, self.stop.requested
        items, requests = self.prompts.requests(idx, cfg.seed, step, attempt)
        with timer.phase("rollout"):
            generation = self.rollouts.generate(requests, cfg.grpo.samples_per_prompt, cfg.rollout.sampling, stop)
        timer.seconds["rollout/engine"] += generation.engine_s
        kept = [(item, req, s) for item, req, s in zip(items, requests, generation.samples, strict=True)
                if s is not None]
        with timer.phase("reward"):
            groups = self.scorer.score([k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept], stop)
        missing = len(idx) - len(kept)
        if refill and missing and attempt >= _MAX_DRAWS:
            raise PromptsExhausted(f"step {step}: {missing} prompt(s) dropped for crashing the engines, and so were "
                                   f"the replacements of {_MAX_DRAWS // _REPLACEMENT_ATTEMPTS} rounds of draws; "
                                   "the dropped prompts are in the run's fault log (faults/dropped_prompts): "
                                   "remove them from the dataset, or raise faults.prompt_retries")
        if refill and missing:
            more = self.curriculum.next_batch(missing, refill=True)
            groups += self.generate_and_score(more, step, attempt + _REPLACEMENT_ATTEMPTS, timer)
        return groups

    def refill(self, groups: list[ScoredGroup], step: int,
               timer: PhaseTimer) -> tuple[list[ScoredGroup], list[ScoredGroup], dict[str, float]]:
        """DAPO dynamic sampling: keep the groups whose rewards differ and draw more prompts for this
        step, for at most ``curriculum.dynamic_max_rounds`` rounds. Returns the batch, every group
        scored (in generation order: the curriculum observes them all) and the metrics."""
        want, seen = self.cfg.grpo.prompts_per_step, list(groups)
        kept, dropped = split_informative(groups, outcome_of=ScoredGroup.outcome)
        rounds = 0
        while len(kept) < want and rounds < self.cfg.curriculum.dynamic_max_rounds:
            rounds += 1
            more = self.generate_and_score(self.curriculum.next_batch(want - len(kept), refill=True), step,
                                           rounds, timer)
            seen += more
            more_kept, more_dropped = split_informative(more, outcome_of=ScoredGroup.outcome)
            kept, dropped = kept + more_kept, dropped + more_dropped
        # Zero-advantage groups fill any shortfall: they add no policy gradient but keep the batch
        # arithmetic (global_batch) intact.
        metrics = {**dynamic_sampling_metrics(kept, dropped, rounds), "curriculum/dynamic_scored_groups": float(len(seen))}
        return fill_batch(kept, dropped, want), seen, metrics

    def train(self, seqs: Sequence[TrainSequence], step: int, lag: int) -> dict[str, float]:
        """``samples / global_batch`` optimizer steps over a seeded shuffle; returns their statistics.

        With ``lag`` 0 (synchronous GRPO) the first optimizer step sees the weights that generated
        the samples (``on_policy``), so its forward pass gives the learner's old log-probs; later
        ones, and every one of samples generated ``lag`` versions ago, need them recomputed first
        when the ratio (``grpo.old_logprobs=learner``) or the mismatch correction uses them."""
        cfg, learners = self.cfg, self.learners
        # Co-located GPU engines hand the device to the learners, which take their state back from
        # host memory. Engines on devices of their own never sleep: in asynchronous GRPO they are
        # generating the next batch now, and vLLM's sleep aborts the requests in flight.
        moved = take_device(cfg, learners, self.rollouts)
        overdue = self.stop.overdue(cfg.faults.preempt_grace_s)
        batches = minibatches(seqs, cfg.grpo.global_batch, cfg.seed, step)
        if (len(batches) > 1 or lag) and (cfg.old_logprobs == "learner" or cfg.grpo.mismatch.needs_learner_logprobs):
            batches = minibatches(self.with_learner_logprobs(seqs, overdue), cfg.grpo.global_batch, cfg.seed, step)
        reports = [learners.train_step(split_for_ranks(batch, learners.world_size, on_policy=k == 0 and not lag),
                                       overdue)
                   for k, batch in enumerate(batches)]
        return {**reduce_train_step(reports), **moved}

    def hand_back(self) -> dict[str, float]:
        """After the sync, co-located GPU learners hand the device back (their state to host memory,
        ``time/offload_s``) and the engines allocate their KV cache again. The learners still hold
        the device during the sync: a CUDA IPC sync hands the engines their GPU tensors."""
        return hand_back(self.cfg, self.learners, self.rollouts)

    def sync_between_steps(self, version: int) -> int:
        """A sync before the first step (FP8 engines' initial weights, a resume's checkpoint): the
        learners, offloaded since the engines were built, hold the device for it, the engines
        asleep, as for training; the version."""
        take_device(self.cfg, self.learners, self.rollouts)
        version = self.weight_sync.sync(version).version
        self.hand_back()
        return version

    def with_learner_logprobs(self, seqs: Sequence[TrainSequence],
                              overdue: Callable[[], bool]) -> list[TrainSequence]:
        """``seqs`` (same order) with the learners' log-probs under the weights they hold now."""
        world = self.learners.world_size
        shards = [TrainShard(tuple(seqs[r::world]), 1, 1) for r in range(world)]
        out: list[TrainSequence] = list(seqs)
        for r, shard in enumerate(self.learners.old_logprobs(shards, overdue)):
            out[r::world] = shard.sequences
        return out

    def sync(self, step: int, groups: Sequence[ScoredGroup], timer: PhaseTimer, train: dict[str, float],
             extra: dict[str, float]) -> SyncReport:
        """Publish the trained weights to the engines. When the engines fail past the restart bound,
        the step's line is still logged (its state is checkpointed by ``run``): no finished step is lost."""
        start, version = time.perf_counter(), self.ledger.state.weights_version
        try:
            report = self.weight_sync.sync(version)
        except RolloutRestartLimit:
            failed = SyncReport(version, time.perf_counter() - start, self.weight_sync.last_nbytes, 0, 0)
            timer.stop()
            self.metrics.log(step_line(step, groups, timer, train, failed, version - 1,
                                       {**extra, **self.fault_log.metrics()}))
            raise
        self.ledger.synced(report.version)
        return report

    # ------------------------------------------------------------------------- state

    def _restore(self) -> StepLedger:
        """The ledger of the latest complete checkpoint, loaded into learners, engines and curriculum."""
        found = latest_checkpoint(self.run_dir)
        if found is None:
            return self._fresh()
        step, path = found
        state = load_run_state(path)
        self.learners.load(str(path / "learner"))
        self.curriculum.load_state_dict(state.curriculum)
        ledger = StepLedger.resumed(state)
        ledger.synced(self.sync_between_steps(state.weights_version))
        if state.lookahead:
            self.ahead.preload(step + 1, groups_from_state(state.lookahead))
        truncate_after(self.run_dir / "metrics.jsonl", step)
        log.info("resumed from %s (step %d)", path, step)
        return ledger

    def checkpoint(self) -> Path:
        """Checkpoint the ledger's state (learners, optimizer, driver state, the fault log and the
        precision record as they are now) atomically."""
        state = replace(self.ledger.state, faults=self.fault_log.state(), lookahead=self.ahead.state(),
                        precision=self.precision.state.state())
        path = save_checkpoint(self.run_dir, state, self.learners.save, self.cfg.checkpoint.keep)
        self.ledger.saved()
        return path

    def _preempted(self, err: Interrupted) -> Preempted:
        """A stop in the middle of a step: checkpoint the last consistent state when the learners
        still hold it (generation and scoring were abandoned), else keep the last checkpoint."""
        where = f"signal {self.stop.signal} during step {self.fault_log.step} ({err})"
        if self.ledger.updating:
            return Preempted(f"{where}: training did not finish within faults.preempt_grace_s, so the newest "
                             f"complete checkpoint (step {self.ledger.saved_step}) is the resume point; continue "
                             f"with resume={self.run_dir}")
        if self.ledger.unsaved:
            self.checkpoint()
        return Preempted(f"{where}: stopped with a checkpoint of step {self.ledger.step}; continue with "
                         f"resume={self.run_dir}")

    def _checkpoint_after_failure(self, err: Exception) -> None:
        """After an engine or scorer failure, checkpoint the last consistent state (the previous
        step before training, this step after it) so that the run resumes without losing it;
        learner failures leave the learners mid-update, and the last periodic checkpoint stays."""
        if not self.ledger.unsaved:
            return
        try:
            log.warning("%s; saved checkpoint %s before stopping", err, self.checkpoint())
        except Exception as save_err:  # noqa: BLE001 - report the original failure, not this one
            log.warning("could not checkpoint after the failure: %s", save_err)


def step_line(step: int, groups: Sequence[ScoredGroup], timer: PhaseTimer, train: dict[str, float],
              sync: SyncReport, trained: int, extra: dict[str, float]) -> dict[str, Any]:
    """The metrics line of one step (docs/design.md, contract 3, plus stage keys in ``extra``); ``trained``:
    the version of the weights the step trained (the learners now hold ``trained + 1``)."""
    t = timer.seconds
    rollout = rollout_metrics(groups, trained)
    # What the learners' own phases leave of time/train_s: Ray calls, moving the shards, and the
    # old-log-prob passes when they run.
    learners = train.get("time/train/forward_backward_s", 0.0) + train.get("time/train/optimizer_s", 0.0)
    return {
        "step": step, **rollout, **train, "time/train/other_s": t["train"] - learners,
        "time/step_s": timer.total, **{f"time/{k}_s": v for k, v in t.items()},
        "tokens_per_s": rollout["tokens/generated"] / max(t["rollout"], 1e-9),
        "sync/bytes": sync.nbytes, "sync/object_store_engines": sync.object_store_engines,
        "weights/version": trained + 1, "weights/engine_version": sync.version, **extra,
    }


def run_tag(run_dir: Path) -> str:
    """Run-unique tag for /dev/shm file names (two runs on one node must not collide)."""
    return hashlib.blake2b(str(run_dir.resolve()).encode(), digest_size=4).hexdigest()
