"""An in-process harness for the GRPO loop: scripted engines, recording learners, a real reward pool.

``GRPOLoop`` is written against the Protocols of ``rlplat.runtime.protocols``; here they are met by
fakes that run in the test's own process, so the loop's logic (refill, replacement draws, preemption,
failure checkpoints, the asynchronous lookahead with evaluation) is tested in seconds instead of
40-55 s launches. Only Ray, vLLM and DeepSpeed are replaced; the curriculum, the checkpoints, the
metrics logger, the signal handling and the reward pool (``rewards.RewardPool``, in-process) are the
real ones. The real actor groups keep their own integration tests (tests/integration).

* ``FakeEngines``: each request's ``n`` samples are a deterministic function of the request's seed,
  the sample's index and the weights version the engines hold, so a resumed run regenerates exactly
  what the uninterrupted one did. A sample answers its prompt correctly with a probability that
  rises with the version (the policy "learns") and differs by prompt (some groups carry no signal).
* ``FakeLearners``: record every shard and the version each optimizer step trained; statistics are
  functions of the shards; ``save``/``load`` write and read the version.
* ``FakeSync``: hands the learners' version to the engines.
* ``PoolScorer``: the real reward pool scoring the samples, with its counters and tallies.

Each fake reads the step the calling thread works for from the run's ``FaultLog`` (as the real
groups do), fires the run's injected driver faults through the real ``FaultInjector`` (a SIGTERM is a
real signal to this process, caught by the loop's ``StopRequested``), and raises what the test
scripted for a (phase, step) (``Script``): a ``RolloutRestartLimit`` at "sync" is a sync that failed
past the restart bound, a ``Crash`` anywhere is a lost machine (no handler runs).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from curricula import Curriculum, build_curriculum
from rewards import RewardPool
from rlplat.checkpoint import latest_checkpoint
from rlplat.config.loader import load
from rlplat.config.schema import Config, SamplingConfig
from rlplat.distributed.waits import Interrupted
from rlplat.faults import FaultInjector, FaultLog, parse_faults
from rlplat.metrics import read_metrics
from rlplat.runtime.evaluation import EVAL_TALLY, HeldOutEval
from rlplat.runtime.ledger import RunRecords
from rlplat.runtime.prompts import PromptSet, split_held_out
from rlplat.runtime.protocols import Interrupt, LoopParts, SyncReport
from rlplat.runtime.scorer import reward_inputs, reward_spec, scored_groups
from rlplat.runtime.signals import StopRequested
from rlplat.stages.base import StageContext
from rlplat.stages.grpo import GRPOLoop
from rlplat.types import (
    Generation,
    GenerationRequest,
    MicroStats,
    PromptItem,
    RankStepStats,
    Sample,
    ScoredGroup,
    TrainShard,
)

# The settings of the launch-based tests (tests/integration/launch_helpers.FAST), less what the
# fakes ignore: 4 steps of 8 prompts x 4 samples, two optimizer steps each, checkpoints at 2 and 4.
FAST = ("grpo.total_steps=4", "grpo.prompts_per_step=8", "grpo.samples_per_prompt=4", "grpo.global_batch=16",
        "checkpoint.every=2", "metrics.tensorboard=false", "progress=false")
# Keys a resumed run must reproduce exactly (timing keys cannot).
REPRODUCED = ("pass_rate", "reward/mean", "kl", "entropy", "response_length/mean", "tokens/generated",
              "weights/version", "loss/policy", "sync/bytes", "reward/samples", "weights/staleness")
NUM_PROMPTS = 64
SYNC_BYTES = 4096


class Crash(BaseException):
    """The machine is lost: nothing in the loop handles it (the fakes' stand-in for SIGKILL)."""


@dataclass
class Script:
    """What fails where: (phase, step) -> the exception raised when that phase of that step starts
    (phases "generate", "score", "train", "sync"). Each fires once."""

    failures: dict[tuple[str, int], BaseException] = field(default_factory=dict)

    def check(self, phase: str, step: int) -> None:
        """Raise what was scripted for ``phase`` of ``step``, if anything."""
        err = self.failures.pop((phase, step), None)
        if err is not None:
            raise err


@dataclass
class Context:
    """What every fake shares: the run's fault log (the step of the calling thread), the injector,
    the script, and the weights version the engines hold."""

    log: FaultLog
    injector: FaultInjector
    script: Script
    engine_version: int = 0
    events: list[tuple[str, int]] = field(default_factory=list)  # (what, step) of sleeps, moves, syncs

    def enter(self, phase: str, interrupt: Interrupt | None = None) -> int:
        """A phase starts: fire the driver's injected faults, raise what is scripted, honour the
        interrupt as the real waits do; returns the step the calling thread works for."""
        step = self.log.step
        self.injector.at(phase)
        self.script.check(phase, step)
        if interrupt is not None and interrupt():
            raise Interrupted(f"{phase} of step {step}")
        return step


def answer(uid: str) -> str:
    """The reference answer of prompt ``uid`` (``prompt_items``)."""
    return str(sum(map(ord, uid)) % 97)


def prompt_items(count: int = NUM_PROMPTS) -> list[PromptItem]:
    """``count`` prompts ``arith:i`` whose answers the math verifier checks."""
    return [PromptItem(uid=f"arith:{i}", index=i, question=f"q{i}", text=f"q{i}", reference=answer(f"arith:{i}"))
            for i in range(count)]


def prompt_set(items: Sequence[PromptItem]) -> PromptSet:
    """``items`` with token ids of their own (the fakes only carry them around)."""
    return PromptSet(tuple(items), tuple((7, it.index % 50 + 1, 9) for it in items))


@dataclass
class FakeEngines:
    """Scripted rollout engines (``rlplat.runtime.protocols.Rollouts``).

    ``crashing``: uids whose requests come back None (a prompt dropped for crashing engines);
    ``uniform``: uids whose every sample is alike (all right or all wrong: a group with no signal).
    ``calls``: (step, uids) of every ``generate``; ``seeds``: the seeds of every request sent;
    ``sleeps``: the step of every ``sleep``.
    """

    ctx: Context
    crashing: frozenset[str] = frozenset()
    uniform: frozenset[str] = frozenset()
    calls: list[tuple[int, list[str]]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    sleeps: list[int] = field(default_factory=list)

    def generate(self, requests: Sequence[GenerationRequest], n: int, sampling: SamplingConfig,
                 interrupt: Interrupt | None = None) -> Generation:
        step = self.ctx.enter("generate", interrupt)
        self.calls.append((step, [r.uid for r in requests]))
        self.seeds += [r.seed for r in requests]
        return Generation([None if r.uid in self.crashing else [self._sample(r, j) for j in range(n)]
                           for r in requests], engine_s=0.0)

    def _sample(self, request: GenerationRequest, j: int) -> Sample:
        version = self.ctx.engine_version
        rng = random.Random(f"{request.seed}|{j}|{version}")
        skill = 0.15 + 0.1 * version + 0.5 * (int(request.uid.split(":")[1]) % 3) / 3
        right = skill > 0.5 if request.uid in self.uniform else rng.random() < skill
        length = rng.randint(2, 8)
        text = f"so \\boxed{{{answer(request.uid) if right else 'x'}}}"
        return Sample(tuple(rng.randint(10, 60) for _ in range(length)), text, tuple([-1.0] * length), version)

    def sleep(self) -> None:
        """Nothing to free (the fakes hold no device memory); recorded."""
        self.sleeps.append(self.ctx.log.step)
        self.ctx.events.append(("sleep", self.ctx.log.step))

    def wake(self) -> None:
        """Recorded."""
        self.ctx.events.append(("wake", self.ctx.log.step))


@dataclass
class FakeLearners:
    """Recording learner ranks (``rlplat.runtime.protocols.Learners``): ``trained`` holds
    (step, version trained from, shards) of every optimizer step."""

    ctx: Context
    world_size: int = 2
    version: int = 0
    trained: list[tuple[int, int, list[TrainShard]]] = field(default_factory=list)

    def train_step(self, shards: Sequence[TrainShard], interrupt: Interrupt | None = None) -> list[RankStepStats]:
        step = self.ctx.enter("train", interrupt)
        self.ctx.events.append(("train", step))
        self.trained.append((step, self.version, list(shards)))
        self.version += 1
        return [RankStepStats((MicroStats(_stats(s), max(len(s.sequences), 1)),), grad_norm=1.0,
                              seconds={"forward_backward": 0.0, "optimizer": 0.0}) for s in shards]

    def old_logprobs(self, shards: Sequence[TrainShard], interrupt: Interrupt | None = None) -> list[TrainShard]:
        self.ctx.enter("train", interrupt)
        return [replace(s, sequences=tuple(replace(q, learner_logprobs=q.old_logprobs) for q in s.sequences))
                for s in shards]

    def offload(self) -> float:
        self.ctx.events.append(("offload", self.ctx.log.step))
        return 0.5

    def reload(self) -> float:
        self.ctx.events.append(("reload", self.ctx.log.step))
        return 0.25

    def save(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "learners.json").write_text(json.dumps({"version": self.version}))

    def load(self, directory: str) -> None:
        self.version = int(json.loads((Path(directory) / "learners.json").read_text())["version"])


def _stats(shard: TrainShard) -> dict[str, float]:
    """A rank's statistics as functions of its shard: a loss share, a KL and an entropy."""
    seqs = shard.sequences
    tokens = sum(len(q.completion_ids) for q in seqs)
    return {"loss/policy": -sum(q.advantage * len(q.completion_ids) for q in seqs) / max(shard.num_tokens, 1),
            "kl": 0.001 * tokens / max(len(seqs), 1), "entropy": 1.0 + 0.01 * sum(q.advantage for q in seqs)}


@dataclass
class FakeSync:
    """The weight sync (``rlplat.runtime.protocols.Publisher``): the engines take the version named."""

    ctx: Context
    fp8: bool = False
    engines_fp8: bool = False
    last_nbytes: int = 0
    versions: list[int] = field(default_factory=list)

    def sync(self, version: int) -> SyncReport:
        self.ctx.enter("sync")
        self.ctx.events.append(("sync", self.ctx.log.step))
        self.last_nbytes = SYNC_BYTES
        self.ctx.engine_version = version
        self.versions.append(version)
        return SyncReport(version, 0.0, SYNC_BYTES, 2, 0)


@dataclass
class PoolScorer:
    """The reward scorer (``rlplat.runtime.protocols.Scoring``) over a real ``rewards.RewardPool``."""

    ctx: Context
    pool: RewardPool

    def score(self, prompts: Sequence[PromptItem], requests: Sequence[GenerationRequest],
              groups: Sequence[Sequence[Sample]], interrupt: Interrupt | None = None,
              tally: str = "default") -> list[ScoredGroup]:
        self.ctx.enter("score", interrupt)
        return scored_groups(prompts, requests, groups, self.pool.score_batch(reward_inputs(prompts, groups),
                                                                                tally=tally))

    def stats_and_reset(self, tally: str = "default") -> dict[str, float]:
        return self.pool.stats_and_reset(tally)


def new_pool(cfg: Config | None = None) -> RewardPool:
    """The reward pool of ``cfg`` (the default math reward), one worker."""
    return RewardPool(reward_spec((cfg or Config()).reward), num_workers=1, timeout_s=30.0)


def curriculum(cfg: Config, uids: list[str]) -> Curriculum:
    """The configured curriculum over ``uids``, as the GRPO stage builds it."""
    c = cfg.curriculum
    return build_curriculum(c.name, uids=uids, seed=cfg.seed, total_steps=cfg.grpo.total_steps, **c.options)


def config(run_dir: Path, *overrides: str) -> Config:
    """The launcher's typed config for ``FAST`` plus ``overrides``, as ``python -m rlplat.launch`` builds it."""
    cfg, _ = load([f"hydra.run.dir={run_dir}", *FAST, *overrides])
    return cfg


class Run:
    """One GRPO loop over the fakes in ``run_dir`` (``resume``: continue it): built by the
    constructor, run by ``go`` (which raises what the loop raised), then inspected."""

    def __init__(self, pool: RewardPool, run_dir: Path, *overrides: str, resume: bool = False,
                 script: Script | None = None, crashing: frozenset[str] = frozenset(),
                 uniform: frozenset[str] = frozenset()) -> None:
        self.cfg, self.run_dir, self.resume = config(run_dir, *overrides), run_dir, resume
        self.records = RunRecords.restored(run_dir, resume)
        log = self.records.faults
        self.ctx = Context(log, FaultInjector(parse_faults(self.cfg.faults.inject), log), script or Script())
        self.engines = FakeEngines(self.ctx, crashing, uniform)
        self.learners = FakeLearners(self.ctx)
        self.sync = FakeSync(self.ctx)
        pool.stats_and_reset()  # a shared pool: this run counts from zero
        pool.stats_and_reset(EVAL_TALLY)
        train, held_out = split_held_out(prompt_items(), self.cfg.grpo.eval_prompts, self.cfg.seed)
        self.stop = StopRequested()
        self.loop = GRPOLoop(StageContext(self.cfg, run_dir, model_path="fake", resume=resume),
                             LoopParts(self.learners, self.engines, PoolScorer(self.ctx, pool), self.sync),
                             prompt_set(train), HeldOutEval(self.cfg, prompt_set(held_out)),
                             curriculum(self.cfg, [it.uid for it in train]), self.stop, self.records)

    def go(self) -> Run:
        """Run the loop to its end, SIGTERM and SIGINT caught as the launcher does; returns self."""
        with self.stop:
            self.loop.run()
        return self

    def metrics(self) -> list[dict[str, Any]]:
        """The run directory's step lines."""
        return read_metrics(self.run_dir / "metrics.jsonl")

    def steps(self) -> list[int]:
        """The steps logged."""
        return [int(r["step"]) for r in self.metrics()]

    def checkpoint_step(self) -> int | None:
        """The step of the newest complete checkpoint (None: none)."""
        found = latest_checkpoint(self.run_dir)
        return None if found is None else found[0]
