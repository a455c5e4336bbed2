"""What the GRPO loop calls: the rollout engines, the learners, the scorer and the weight sync.

The loop (``rlplat.stages.grpo.GRPOLoop``) is written against these Protocols, not against the
Ray actor groups that implement them (``RolloutGroup``, ``LearnerGroup``, ``Scorer``,
``WeightSync``), so that its logic (dynamic-sampling refill, replacement draws, preemption,
failure checkpoints, the asynchronous lookahead) runs in-process over fakes in tests
(``tests/loop/``) and over the real actors in production. Each method states the contract the
loop relies on; the deadlines and fault injection belong to the implementations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rlplat.config.schema import SamplingConfig
from rlplat.types import Generation, GenerationRequest, PromptItem, RankStepStats, Sample, ScoredGroup, TrainShard

# An ``interrupt`` polled by waits that may be abandoned: True means stop waiting now
# (``rlplat.distributed.waits.Interrupted`` is raised).
Interrupt = Callable[[], bool]


class Rollouts(Protocol):
    """The rollout engines."""

    def generate(self, requests: Sequence[GenerationRequest], n: int, sampling: SamplingConfig,
                 interrupt: Interrupt | None = None) -> Generation:
        """``n`` samples for each request, in request order, each stamped with the weights version
        that generated it; None for a request whose prompt was dropped (it crashed engines).
        Raises ``RolloutRestartLimit`` when engines failed past the run's bound, ``Interrupted``
        when ``interrupt`` fired."""
        ...

    def sleep(self) -> None:
        """GPU co-location: free the engines' memory while the learners train (the next weight
        load gives them their weights memory back, ``wake`` their KV cache)."""
        ...

    def wake(self) -> None:
        """After a sync, once the learners have handed the device back: sleeping engines allocate
        their KV cache again (awake ones do nothing)."""
        ...


class Learners(Protocol):
    """The data-parallel learner ranks, called together."""

    @property
    def world_size(self) -> int:
        """Data-parallel ranks: ``train_step`` and ``old_logprobs`` take one shard each (the ranks of
        a sequence-parallel group count once and share theirs)."""
        ...

    def train_step(self, shards: Sequence[TrainShard], interrupt: Interrupt | None = None) -> list[RankStepStats]:
        """One optimizer step (``shards[r]`` to rank ``r``); every rank's report. The learners then
        hold the next weights version. Raises ``ActorFailure``/``PhaseTimeout`` when a rank fails
        (the learners' state is then unknown), ``Interrupted`` when ``interrupt`` fired."""
        ...

    def old_logprobs(self, shards: Sequence[TrainShard], interrupt: Interrupt | None = None) -> list[TrainShard]:
        """The shards with ``learner_logprobs`` filled in under the weights held now (same order)."""
        ...

    def offload(self) -> float:
        """Move parameters, gradients, optimizer state and the reference model off the device (to
        pinned host memory) while co-located engines generate; the seconds it took."""
        ...

    def reload(self) -> float:
        """Undo ``offload`` before training; the seconds it took."""
        ...

    def save(self, directory: str) -> None:
        """Write model and optimizer state into ``directory`` (a checkpoint's ``learner/``)."""
        ...

    def load(self, directory: str) -> None:
        """Restore what ``save`` wrote."""
        ...


class Scoring(Protocol):
    """The reward scorer."""

    def score(self, prompts: Sequence[PromptItem], requests: Sequence[GenerationRequest],
              groups: Sequence[Sequence[Sample]], interrupt: Interrupt | None = None,
              tally: str = "default") -> list[ScoredGroup]:
        """Every sample of every group scored (``prompts[i]`` was sent as ``requests[i]`` and
        produced ``groups[i]``), in order; counted in the reward counters of ``tally``. Raises
        ``RewardRestartLimit`` past the run's bound, ``Interrupted`` when ``interrupt`` fired."""
        ...

    def stats_and_reset(self, tally: str = "default") -> dict[str, float]:
        """``tally``'s counters (``reward/*``) since its last reset, then zero."""
        ...


@dataclass(frozen=True)
class SyncReport:
    """What one weight sync did: the version the engines now hold, its seconds and bytes, and how
    many engines read it from shared memory or from the object store."""

    version: int
    seconds: float
    nbytes: int
    shm_engines: int
    object_store_engines: int


class Publisher(Protocol):
    """The learner -> engines weight sync."""

    fp8: bool
    """Send linear weights as FP8 from the next sync on (the mismatch guardrail may clear it)."""
    engines_fp8: bool
    """Whether the engines hold FP8 weights now."""
    last_nbytes: int
    """Bytes of the last export (known even when loading it into the engines then failed)."""

    def sync(self, version: int) -> SyncReport:
        """Publish the learners' weights to every engine as ``version``. Raises
        ``RolloutRestartLimit`` when engines failed to load past the run's bound."""
        ...


@dataclass(frozen=True)
class LoopParts:
    """What a GRPO loop drives: built from Ray actors by the stage, from fakes by tests."""

    learners: Learners
    rollouts: Rollouts
    scorer: Scoring
    weight_sync: Publisher
