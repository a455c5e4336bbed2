"""Records that cross process boundaries (driver <-> Ray actors), one definition each.

Everything here is a frozen dataclass of plain values so that it pickles cheaply through the Ray
object store and cannot be changed behind the driver's back. The flow of one GRPO step::

    PromptItem --tokenise--> GenerationRequest --engine--> Sample x n --verifier--> ScoredGroup
    ScoredGroup --advantages--> TrainSequence --split--> TrainShard (one per learner rank)
    learner --export--> SyncManifest (BucketSpec...) --engine--> LoadReport
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from curricula import GroupOutcome


@dataclass(frozen=True)
class PromptItem:
    """One prompt of a dataset, ready for generation.

    Attributes:
        uid: Stable identifier of the row (file + row number, or the dataset's own id). The
            curriculum's pass-rate store is keyed by it, so it must survive a resume.
        index: Position of the row in the loaded dataset.
        question: The user's question as it appears in the data (what verifiers see as prompt).
        text: The full prompt string fed to the model (chat template and system prompt applied).
        reference: The reference answer (a string for math; tests for code).
        system: The system prompt used, if any ("detailed thinking on/off" for the toggle).
        metadata: Free-form per-row metadata forwarded to the reward (for example test_format).
    """

    uid: str
    index: int
    question: str
    text: str
    reference: Any
    system: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to sample from; ``seed`` makes its samples reproducible on CPU."""

    uid: str
    prompt_token_ids: tuple[int, ...]
    seed: int


@dataclass(frozen=True)
class Sample:
    """One generated completion, as the engine produced it (its prompt is the group's).

    Attributes:
        token_ids: Token ids of the completion (no padding).
        text: Decoded completion text.
        logprobs: Log-probability of each sampled token under the rollout policy, same length as
            ``token_ids``.
        weights_version: Version of the weights that generated it (see ``rlplat.sync``).
        finish_reason: "stop" or "length" as reported by the engine.
    """

    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...]
    weights_version: int
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Generation:
    """Samples for a list of requests, in order (None: a request whose prompt was dropped), and
    ``engine_s``: the seconds the engines spent inside ``LLM.generate`` (the slowest engine of each
    round, summed), which the Ray calls and moving the samples around them add to."""

    samples: list[list[Sample] | None]
    engine_s: float


@dataclass(frozen=True)
class ScoredSample:
    """A sample with its reward.

    Attributes:
        sample: The generated sample.
        reward: Scalar reward used for the advantage.
        correct: Whether the verifier accepted the answer (feeds ``pass_rate``).
        timed_out: The verifier hit its deadline.
        details: Per-component scores (for example ``{"math": 1.0, "format": 0.0}``).
    """

    sample: Sample
    reward: float
    correct: bool
    timed_out: bool = False
    details: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoredGroup:
    """All samples drawn for one prompt, scored: the unit GRPO normalises over.

    The prompt's token ids are held once here, not by each of the ``n`` samples.
    """

    prompt: PromptItem
    prompt_token_ids: tuple[int, ...]
    samples: tuple[ScoredSample, ...]

    @property
    def rewards(self) -> list[float]:
        """Rewards of the samples, in order."""
        return [s.reward for s in self.samples]

    def outcome(self) -> GroupOutcome:
        """What the curriculum learns from this group (its pass rate and reward spread)."""
        return GroupOutcome(uid=self.prompt.uid, rewards=self.rewards, correct=[s.correct for s in self.samples])


@dataclass(frozen=True)
class TrainSequence:
    """One prompt + completion with what the loss needs.

    ``old_logprobs`` are the rollout engine's logprobs of ``completion_ids`` (empty for SFT);
    ``learner_logprobs`` the learner's under the weights that generated them, when the driver had
    them recomputed (``LearnerGroup.old_logprobs``; empty otherwise).
    """

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    old_logprobs: tuple[float, ...]
    advantage: float
    learner_logprobs: tuple[float, ...] = ()


@dataclass(frozen=True)
class TrainShard:
    """One rank's part of one optimizer step, plus the step's global normalisers.

    Attributes:
        sequences: This rank's sequences.
        num_tokens: Completion tokens in the whole optimizer step (all ranks).
        num_seqs: Sequences in the whole optimizer step (all ranks).
        on_policy: The learners still hold the weights that generated the samples (the step's
            first optimizer step), so their forward pass gives the old log-probs for free.
    """

    sequences: tuple[TrainSequence, ...]
    num_tokens: int
    num_seqs: int
    on_policy: bool = False


@dataclass(frozen=True)
class MicroStats:
    """Statistics of one micro-batch as a learner rank measured them (reduced by ``algo.stats``).

    Attributes:
        values: Named floats: ``loss/*`` are shares of the global loss, ``*/max`` maxima, the rest
            masked means over the micro-batch's tokens.
        rows: Sequences in the micro-batch (the weight of its means).
    """

    values: dict[str, float]
    rows: int


@dataclass(frozen=True)
class RankStepStats:
    """What one learner rank reports for one optimizer step.

    ``seconds``: wall time of the rank's phases (GRPO): ``forward_backward`` (collating, forward and
    backward passes of every micro-batch, with the gradient reduction DeepSpeed runs inside the
    last backward) and ``optimizer`` (``engine.step``).
    """

    micro: tuple[MicroStats, ...]
    grad_norm: float
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives inside a weight bucket."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True)
class BucketSpec:
    """Layout of one weight bucket: its tensors and total size in bytes."""

    entries: tuple[TensorEntry, ...]
    nbytes: int


@dataclass(frozen=True)
class ExportPlan:
    """How learners publish weights version ``version`` (decided by the driver each sync).

    Attributes:
        version: The version being published.
        tag: Run-unique tag in the bucket file names.
        shm_dir: Directory of the bucket files (a tmpfs such as /dev/shm).
        shm_writer_ranks: Learner ranks that write bucket files, one per node that hosts engines.
        object_store: Rank 0 also puts the buckets in the Ray object store (engines on nodes
            without a learner).
        bucket_bytes: Target bucket size.
        fp8: Send linear weights as FP8 with scales (``rlplat.sync.fp8``; ``rollout.precision=fp8``).
    """

    version: int
    tag: str
    shm_dir: str
    shm_writer_ranks: frozenset[int]
    object_store: bool
    bucket_bytes: int
    fp8: bool = False


@dataclass(frozen=True)
class SyncManifest:
    """Everything a rollout worker needs to load weights version ``version``.

    Attributes:
        version: Weight version these buckets hold (monotonic, 0 = the weights the engine started from).
        specs: Layout of each bucket, in order.
        shm_paths: File of each bucket, valid on every node in ``shm_nodes``.
        shm_nodes: Ray node ids whose /dev/shm holds the files.
        refs: Ray object refs of each bucket's bytes, for nodes outside ``shm_nodes``; empty when
            every engine shares a node with a writer.
        stream_wait_s: 0: every file exists before the load starts. Above 0 (streamed sync,
            ``sync.stream``): the learners may still be writing; the engines wait for each file,
            at most this long in all (``rlplat.sync.transport.iter_weights``).
    """

    version: int
    specs: tuple[BucketSpec, ...]
    shm_paths: tuple[str, ...]
    shm_nodes: frozenset[str]
    refs: tuple[Any, ...] = ()
    stream_wait_s: float = 0.0

    @property
    def nbytes(self) -> int:
        """Total bytes of all buckets."""
        return sum(s.nbytes for s in self.specs)


@dataclass(frozen=True)
class LoadReport:
    """Result of a weight load on one rollout worker."""

    version: int
    seconds: float
    nbytes: int
    num_tensors: int
