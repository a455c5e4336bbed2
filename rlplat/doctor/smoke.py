"""The doctor's smoke run: the RL loop's critical paths on a tiny model, with the real actors.

It runs the run's own parts, not copies of them: the launcher's model builder (``initial_model``),
Ray start-up (``start_ray``: a local instance on 127.0.0.1, or the cluster at ``RAY_ADDRESS``), and a
stage's actors (``StageActors``: one learner rank beside one engine in one bundle, co-located as a
run places them, and the reward scorer) with the weight sync the GRPO stage gets from them
(``StageActors.loop_parts``). On GPU the phases are ordered as ``GRPOLoop`` orders them: the engine
sleeps and the learner takes the device back for training; after the sync the learner hands the
device back and the engine wakes.

Each public method is one check of the doctor's table: it returns the check's detail, raises
``Skip`` where the check does not apply, and fails otherwise (the runner skips a method whose
prerequisite check did not pass). ``close`` releases everything.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import ray

from rlplat.algo.batching import split_for_ranks
from rlplat.algo.stats import reduce_train_step
from rlplat.config.colocation import engines_sleep
from rlplat.config.schema import (
    ClusterConfig,
    Config,
    LearnerConfig,
    ModelConfig,
    RolloutConfig,
    SamplingConfig,
    TimeoutsConfig,
)
from rlplat.config.validate import validate
from rlplat.distributed.cluster import check_resources, start_ray
from rlplat.distributed.placement import plan_placement
from rlplat.doctor.runner import CheckFailed, Skip
from rlplat.models.tiny import char_vocab
from rlplat.runtime.handoff import hand_back, take_device
from rlplat.runtime.plan_report import param_count
from rlplat.runtime.protocols import Publisher, SyncReport
from rlplat.runtime.stage_actors import StageActors
from rlplat.stages.pipeline import initial_model
from rlplat.sync.plan import IPC
from rlplat.types import GenerationRequest, PromptItem, Sample, TrainSequence

log = logging.getLogger(__name__)
GIB = 1024**3
# Prompts of the smoke (in the tiny model's character vocabulary) and their answers.
PROMPTS = (("1+2=", "3"), ("40+2=", "42"), ("7*6=", "42"))
# Samples per prompt, and the new tokens of each sample and of each greedy completion.
SAMPLES = 2
NEW_TOKENS = 16
# The verifier's control: for the first prompt, a right answer math-verify must find equal to the
# reference (it parses the LaTeX) and a wrong one.
RIGHT, WRONG = "<think>1+2</think> \\boxed{\\frac{6}{2}}", "<think>1+2</think> \\boxed{4}"
# What the learner step reinforces: one completion for every prompt, a large learning rate, so that
# one optimizer step surely changes the greedy output (as the test suite's weight-sync test does).
TARGET = "0123456789abcdef"
LEARNING_RATE = 0.05
# The log-prob an engine gives a token of the untrained model: about -ln(vocabulary size).
UNTRAINED_LOGPROB = -math.log(len(char_vocab()))
# A sleeping engine must free at least this share of the device memory it holds (its
# ``gpu_memory_utilization`` share: weights and KV cache; some CUDA context stays), and waking must
# take back at least this share of what the sleep freed.
SLEEP_FREES = 0.5
LOGS = "the actors' logs are in Ray's session logs (/tmp/ray/session_latest/logs/worker-*)"
VERSIONS_FIX = "check that vLLM is the release rlplat pins (versions check); " + LOGS


@dataclass(frozen=True)
class SmokeOptions:
    """What the doctor was asked: the device, whether to add an FP8 engine, where the smoke's files
    go, and the Ray cluster to join (None: start a local instance)."""

    device: Literal["cpu", "gpu"]
    fp8: bool
    work_dir: Path
    ray_address: str | None = None


def smoke_config(opts: SmokeOptions) -> Config:
    """The smoke's run config: the defaults of a run, but one bundle (one learner rank and one
    engine), short sequences, a large learning rate, and deadlines a doctor can wait for.

    float32, also on GPU: the weight-sync check compares the engine's greedy tokens with the
    learner's, and bfloat16 kernels of vLLM and torch round differently, which can flip an argmax.
    Except with ``fp8`` on GPU, where vLLM's FP8 needs 16-bit activations (the launcher refuses
    float32 there): bfloat16 then, and the comparison relies on the margins the learner step leaves."""
    return Config(
        run_dir=str(opts.work_dir),
        model=ModelConfig(dtype="bfloat16" if opts.device == "gpu" and opts.fp8 else "float32"),
        cluster=ClusterConfig(address=opts.ray_address, device=opts.device, devices_per_node=1, dashboard=False),
        rollout=RolloutConfig(max_model_len=128, sampling=SamplingConfig(max_new_tokens=NEW_TOKENS)),
        learner=LearnerConfig(lr=LEARNING_RATE, warmup_steps=0, micro_batch_size=8),
        timeouts=TimeoutsConfig(actor_start_s=240, generate_s=120, reward_s=60, train_s=120, sync_s=120,
                                checkpoint_s=60),
    )


def _encode(text: str) -> tuple[int, ...]:
    vocab = char_vocab()
    return tuple(vocab[ch] for ch in text)


class Smoke:
    """The smoke's state between its checks (see the module docstring)."""

    def __init__(self, opts: SmokeOptions) -> None:
        self.opts = opts
        self.cfg = smoke_config(opts)
        self.tag = f"doctor{os.getpid()}"  # the smoke's /dev/shm files
        self.items = [PromptItem(f"doctor-{i}", i, q, q, a) for i, (q, a) in enumerate(PROMPTS)]
        self.requests = [GenerationRequest(p.uid, _encode(p.text), seed=i) for i, p in enumerate(self.items)]
        self.prompts = [list(r.prompt_token_ids) for r in self.requests]
        self.model_path = ""
        self.owns_ray = False
        self.actors: StageActors | None = None
        self.weight_sync: Publisher | None = None
        self.samples: list[list[Sample]] | None = None  # what ``generate`` sampled
        self.version = 0  # the weights version the engine holds
        self.learner_greedy: list[list[int]] | None = None  # after the learner step

    # ------------------------------------------------------------------------------ set-up

    def build_model(self) -> str:
        """The tiny Llama and its character tokenizer, built locally as the launcher builds a run's
        initial model; the smoke's configs first pass the launcher's own validation."""
        validate(self.cfg)
        if self.opts.fp8:
            validate(self._fp8_config())
        self.model_path = initial_model(self.cfg, self.opts.work_dir)
        return (f"tiny Llama, {param_count(self.cfg) / 1e6:.1f}M parameters, character tokenizer, "
                f"{self.cfg.model.dtype}: {self.model_path}")

    def start_ray(self) -> str:
        """Start a local Ray instance on 127.0.0.1 (or join ``RAY_ADDRESS``) as the launcher does,
        and check its resources against the smoke's placement plan."""
        self.owns_ray = not ray.is_initialized()
        start_ray(self.cfg.cluster)
        have = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        plan = plan_placement(self.cfg.cluster, self.cfg.rollout)
        check_resources(plan)
        where = f"joined {self.opts.ray_address}" if self.opts.ray_address else "local instance on 127.0.0.1"
        return (f"{where}: {nodes} node(s), {have.get('CPU', 0):g} CPU, {have.get('GPU', 0):g} GPU; the smoke "
                f"needs {len(plan.bundles)} bundle {plan.bundles[0]}")

    def start_actors(self) -> str:
        """A stage's actors, as the GRPO stage starts them: one DeepSpeed learner rank, one vLLM
        engine and the reward scorer (their errors name the actor that failed), and the weight sync
        between them."""
        self.actors = StageActors(self.cfg, self.model_path, self.cfg.learner.lr)
        self.weight_sync = self.actors.loop_parts(self.tag, fp8=False).weight_sync
        learner, engine = self.actors.learner_group.infos[0], self.actors.rollout_group.infos[0]
        return (f"learner (DeepSpeed ZeRO-{self.cfg.learner.zero_stage}, pid {learner['pid']}), engine (vLLM, "
                f"{self.cfg.model.dtype}, pid {engine['pid']}), reward scorer")

    # ------------------------------------------------------------------------------ the loop's paths

    def generate(self) -> str:
        """Sampled completions with a log-prob per token, stamped with the engine's weights version."""
        self.samples = self._sample(self._actors())
        tokens = sum(len(s.token_ids) for g in self.samples for s in g)
        mean = sum(lp for g in self.samples for s in g for lp in s.logprobs) / max(tokens, 1)
        return (f"{SAMPLES * len(self.samples)} samples, {tokens} tokens; every token has a finite log-prob "
                f"(mean {mean:.2f}; untrained about {UNTRAINED_LOGPROB:.2f})")

    def _sample(self, actors: StageActors) -> list[list[Sample]]:
        """``SAMPLES`` samples of every prompt, checked; ``CheckFailed`` names what is wrong."""
        out = actors.rollout_group.generate(self.requests, SAMPLES, self.cfg.rollout.sampling)
        groups = [g for g in out.samples if g is not None]
        problems = [] if len(groups) == len(self.requests) else [f"{len(groups)} of {len(self.requests)} prompts "
                                                                   "got samples"]
        for s in (s for g in groups for s in g):
            if not s.token_ids or len(s.logprobs) != len(s.token_ids):
                problems.append(f"{len(s.token_ids)} tokens with {len(s.logprobs)} log-probs")
            elif not all(math.isfinite(lp) and lp <= 0.0 for lp in s.logprobs):
                problems.append(f"log-probs outside (-inf, 0]: {s.logprobs[:4]}")
            if s.weights_version != self.version:
                problems.append(f"a sample stamped with weights version {s.weights_version}, not {self.version}")
        if problems or any(len(g) != SAMPLES for g in groups):
            raise CheckFailed("generation: " + "; ".join(dict.fromkeys(problems or ["wrong number of samples"])),
                              VERSIONS_FIX)
        return groups

    def reward(self) -> str:
        """The reward scorer scores the samples in its worker processes, and the math verifier
        judges a known right and a known wrong answer correctly (math-verify and its parser work)."""
        samples, actors = self.samples or [], self._actors()
        control = [Sample(_encode(RIGHT), RIGHT, (), 0), Sample(_encode(WRONG), WRONG, (), 0)]
        groups = actors.reward_scorer.score([*self.items, self.items[0]], [*self.requests, self.requests[0]],
                                            [*samples, control])
        scored = [s for g in groups[:-1] for s in g.samples]
        right, wrong = groups[-1].samples
        if any(s.timed_out for s in scored) or right.timed_out or wrong.timed_out:
            raise CheckFailed(f"the verifier timed out (reward.timeout_s={self.cfg.reward.timeout_s:g})",
                              "a loaded machine? rerun the doctor; else see the reward workers' logs: " + LOGS)
        if not right.correct or wrong.correct:
            raise CheckFailed(f"the math verifier judged {RIGHT!r} {right.correct} and {WRONG!r} {wrong.correct} for "
                              f"the reference 3", "reinstall math-verify with its parser: pip install "
                              "'math-verify[antlr4_9_3]' (make setup does)")
        mean = sum(s.reward for s in scored) / max(len(scored), 1)
        return (f"{len(scored)} samples scored in the reward workers (mean reward {mean:.2f}); the math verifier "
                "judged a right and a wrong answer correctly")

    def sleep_wake(self) -> str:
        """GPU: the engine's sleep frees the device memory it holds, and the way a run wakes it (a
        weight load, then ``wake``) takes the memory back (``torch.cuda.mem_get_info``, summed over
        the devices)."""
        if self.cfg.cluster.device != "gpu":
            raise Skip("no GPU: CPU engines do not sleep")
        if not engines_sleep(self.cfg.cluster, self.cfg.rollout):
            raise Skip("the engines do not sleep here (rollout.sleep_between_phases=false)")
        import torch

        actors = self._actors()
        holds = self.cfg.rollout.gpu_memory_utilization * min(
            torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
        before = _free_device_bytes()
        actors.rollout_group.sleep()
        asleep = _free_device_bytes()
        freed = asleep - before
        if freed < SLEEP_FREES * holds:
            raise CheckFailed(f"sleep freed {freed / GIB:.1f} GiB of the about {holds / GIB:.1f} GiB the engine "
                              "holds", "vLLM's sleep mode needs CUDA virtual memory management: update the "
                              "driver; " + VERSIONS_FIX)
        self._take_device()
        self._sync(self.version)  # the weights the engine holds, again: as a run's first FP8 sync
        self._hand_back()
        retaken = asleep - _free_device_bytes()
        if retaken < SLEEP_FREES * freed:
            raise CheckFailed(f"sleep freed {freed / GIB:.1f} GiB, but waking took back only {retaken / GIB:.1f} "
                              "GiB: the engine did not rebuild its KV cache", VERSIONS_FIX)
        return f"sleep freed {freed / GIB:.1f} GiB; waking (a weight load, then wake) took back {retaken / GIB:.1f} GiB"

    def learner_step(self) -> str:
        """One GRPO optimizer step that reinforces ``TARGET`` after every prompt; it must change the
        learner's greedy output. On GPU the learner then keeps the device for the sync, as in a run."""
        learners = self._actors().learner_group
        self._take_device()
        before = learners.greedy(self.prompts, NEW_TOKENS)
        target = _encode(TARGET)
        seqs = [TrainSequence(tuple(p), target, (UNTRAINED_LOGPROB,) * len(target), 1.0) for p in self.prompts]
        stats = reduce_train_step([learners.train_step(split_for_ranks(seqs, learners.world_size, on_policy=True))])
        self.learner_greedy = learners.greedy(self.prompts, NEW_TOKENS)
        if self.learner_greedy == before:
            raise CheckFailed(f"an optimizer step at lr {LEARNING_RATE} left the greedy output unchanged (grad norm "
                              f"{stats['grad_norm']:.3g}): the learner did not update its weights",
                              "check DeepSpeed's log: " + LOGS)
        return (f"1 optimizer step on {len(seqs)} sequences: grad norm {stats['grad_norm']:.3g}; the greedy "
                "output changed")

    def exact_sync(self) -> str:
        """Sync the trained weights (a new version) into the engine; its greedy output must then
        equal the learner's, token for token."""
        actors = self._actors()
        if self.learner_greedy is None:
            raise RuntimeError("the learner step did not run")
        report = self._sync(self.version + 1)
        self._hand_back()
        engine = actors.rollout_group.greedy(self.prompts, NEW_TOKENS)
        if engine != self.learner_greedy:
            differ = sum(a != b for e, w in zip(engine, self.learner_greedy, strict=True)
                         for a, b in zip(e, w, strict=False))
            raise CheckFailed(f"after the sync the engine's greedy output differs from the learner's at {differ} of "
                              f"{len(self.prompts) * NEW_TOKENS} tokens: the weights did not arrive exactly",
                              VERSIONS_FIX)
        return (f"version {report.version}: {report.nbytes / 2**20:.1f} MiB in {report.seconds:.2f} s via "
                f"{self._transport(report)}; the engine's greedy output equals the learner's "
                f"({len(self.prompts)} x {NEW_TOKENS} tokens)")

    def fp8_engine(self) -> str:
        """``--fp8``: the stage's actors again with ``rollout.precision=fp8`` (in the first ones'
        place), started as a run's GRPO stage starts them: the engines get the initial weights by an
        FP8 sync (version 0 again), then sample with finite log-probs. Their greedy output is not
        required to equal the learner's (FP8 rounds the weights): how much agrees is reported."""
        if not self.opts.fp8:
            raise Skip("not asked (--fp8 adds it)")
        self._close_actors()  # their placement group (on GPU, the device) goes to the FP8 actors
        cfg = self._fp8_config()
        self.actors = actors = StageActors(cfg, self.model_path, cfg.learner.lr)
        self.weight_sync = sync = actors.loop_parts(self.tag, fp8=True).weight_sync
        self.version, self.learner_greedy = 0, None
        self._take_device()
        learner = actors.learner_group.greedy(self.prompts, NEW_TOKENS)  # while it holds the device
        report = self._sync(0)
        self._hand_back()
        samples = self._sample(actors)
        engine = actors.rollout_group.greedy(self.prompts, NEW_TOKENS)
        same = sum(a == b for e, w in zip(engine, learner, strict=True) for a, b in zip(e, w, strict=False))
        payload = "FP8 payload" if sync.engines_fp8 else "16-bit payload, quantized by vLLM"
        return (f"{'vLLM FP8 kernels' if cfg.cluster.device == 'gpu' else 'emulated: FP8-rounded weights'}; sync "
                f"{report.nbytes / 2**20:.1f} MiB ({payload}); {SAMPLES * len(samples)} samples with finite "
                f"log-probs; greedy agrees with the learner's on {same} of {len(self.prompts) * NEW_TOKENS} tokens")

    # ------------------------------------------------------------------------------ plumbing

    def _fp8_config(self) -> Config:
        """The smoke's config with FP8 engines (on CPU, without FP8 kernels, the sync rounds the
        weights to FP8 and the engine computes in the run's dtype: docs/fp8.md)."""
        return replace(self.cfg, rollout=replace(self.cfg.rollout, precision="fp8"))

    def _take_device(self) -> None:
        """Before training or a sync between steps, as ``GRPOLoop`` orders them (``runtime.handoff``)."""
        actors = self._actors()
        take_device(self.cfg, actors.learner_group, actors.rollout_group)

    def _hand_back(self) -> None:
        """After a sync, as ``GRPOLoop`` orders it (``runtime.handoff``)."""
        actors = self._actors()
        hand_back(self.cfg, actors.learner_group, actors.rollout_group)

    def _sync(self, version: int) -> SyncReport:
        if self.weight_sync is None:
            raise RuntimeError("no weight sync: the actors start check did not pass")
        report = self.weight_sync.sync(version)
        self.version = report.version
        return report

    def _transport(self, report: SyncReport) -> str:
        if getattr(self.weight_sync, "backend", None) == IPC:
            return "CUDA IPC"
        if report.object_store_engines == 0:
            return "/dev/shm"
        return "the object store" if report.shm_engines == 0 else "/dev/shm and the object store"

    def _actors(self) -> StageActors:
        if self.actors is None:
            raise RuntimeError("no actors: the actors start check did not pass")
        return self.actors

    def _close_actors(self) -> None:
        if self.actors is not None:
            self.actors.close()
        self.actors = self.weight_sync = None

    def close(self) -> None:
        """Kill the actors (the learners remove their /dev/shm files first), release their placement
        group, and stop Ray if the smoke started it. Idempotent."""
        try:
            self._close_actors()
        finally:
            if self.owns_ray and ray.is_initialized():
                ray.shutdown()
            self.owns_ray = False


def _free_device_bytes() -> int:
    """Free memory of every visible CUDA device, summed: the engine's device is whichever Ray gave it."""
    import torch

    return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
