"""Dry-run report: placement plan (actors per node, devices, parallel layout) and memory per phase.

The memory model is deliberately simple and stated in the output: weights, gradients and Adam
state (fp32 master + two moments) sharded by the ZeRO stage over the data-parallel ranks; the
rollout engine's weights split by tensor parallelism; the rest of the engine's memory share is KV
cache; activations of one micro-batch at the longest sequence (``activation_gib``). Two phases:
``generation`` (the engine's weights and KV cache beside what the learners keep: nothing when they
offload their state to host memory, ``learner.offload_states``) and ``training`` (the learners' state and activations beside what
the engine keeps: nothing when it sleeps, else its weights and KV cache).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlplat.algo.batching import num_optimizer_steps
from rlplat.config.colocation import engines_sleep, learners_offload
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config
from rlplat.config.validate import learner_world_size
from rlplat.distributed.placement import plan_placement
from rlplat.models.costs import model_params
from rlplat.models.decilm_format import is_decilm, read_decilm_config
from rlplat.models.tiny import char_vocab

_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "fp8": 1}
GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-device memory in GiB."""

    weights: float
    grads: float
    optimizer: float
    reference: float
    engine_weights: float
    engine_kv: float
    host_optimizer: float

    @property
    def learner(self) -> float:
        """Learner total (training phase)."""
        return self.weights + self.grads + self.optimizer + self.reference


@dataclass(frozen=True)
class ModelDims:
    """What the estimates need of the architecture: hidden size, decoder layers, vocabulary."""

    hidden: int
    layers: int
    vocab: int


def model_dims(cfg: Config) -> ModelDims | None:
    """The policy's dimensions: ``model.hidden_size``/``num_layers``/``vocab_size`` when given, else
    from the model directory's config, else the tiny shape; None when none of them is known."""
    m = cfg.model
    if m.hidden_size and m.num_layers and m.vocab_size:
        return ModelDims(m.hidden_size, m.num_layers, m.vocab_size)
    if m.path and is_decilm(m.path):
        d = read_decilm_config(m.path)
        return ModelDims(d.hidden_size, len(d.blocks), d.vocab_size)
    if m.path and (Path(m.path) / "config.json").exists():
        c = json.loads((Path(m.path) / "config.json").read_text())
        return ModelDims(c["hidden_size"], c["num_hidden_layers"], c["vocab_size"])
    if m.path:
        return None
    return ModelDims(m.tiny.hidden_size, m.tiny.num_layers, len(char_vocab()))


def activation_gib(cfg: Config, checkpointing: bool) -> float | None:
    """Activation memory of one learner micro-batch at the longest sequence (``rollout.max_model_len``),
    in GiB; None when the architecture is unknown (``model.hidden_size`` ... unset, no model here).

    ``T`` tokens (``learner.max_tokens_per_micro_batch``, else ``micro_batch_size x max_model_len``),
    hidden ``h``, ``n`` layers, vocabulary ``V``, ``b`` bytes per value:

    * one decoder layer's activations for its backward: ``34 T h b / 2`` (Korthikanti et al.,
      arXiv 2205.05198, with fused attention: no term in the square of the sequence);
    * with gradient checkpointing each layer keeps only its input, ``T h b``, and one layer at a time
      holds its whole activations again: ``n T h b + 34 T h b / 2``; without: ``n x 34 T h b / 2``;
    * the logits and their float32 log-softmax for the log-probs: ``T V (b + 4)``;
    * all of it divided by ``learner.sequence_parallel``: each rank of a group keeps its share of
      the positions (Ulysses attention holds every position for 1/N of the heads: the same size).
    """
    dims = model_dims(cfg)
    if dims is None:
        return None
    b = _BYTES[cfg.model.dtype]
    tokens = cfg.learner.max_tokens_per_micro_batch or cfg.learner.micro_batch_size * cfg.rollout.max_model_len
    layer = 34 * tokens * dims.hidden * b / 2
    kept = dims.layers * tokens * dims.hidden * b + layer if checkpointing else dims.layers * layer
    return (kept + tokens * dims.vocab * (b + 4)) / GIB / cfg.learner.sequence_parallel


@dataclass(frozen=True)
class PhaseMemory:
    """Per-device GiB of each phase (``describe`` prints one line each)."""

    generation: float
    training: float
    activations: float | None


def phase_memory(cfg: Config, m: MemoryEstimate) -> PhaseMemory:
    """``generation``: engine weights and KV cache + what the learners keep on the device (nothing
    when they offload their state, ``learner.offload_states``; all of it otherwise).
    ``training``: the learners' state + activations + what the engine keeps (nothing when it sleeps,
    co-located on GPU; its weights and KV cache otherwise)."""
    engine = m.engine_weights + m.engine_kv
    c = cfg.cluster
    sleeps = engines_sleep(c, cfg.rollout)
    act = activation_gib(cfg, cfg.model.gradient_checkpointing)
    shared = c.colocate or c.device == "cpu"  # separate GPUs: each phase's device holds one side
    kept = 0.0 if learners_offload(c, cfg.rollout, cfg.learner) else m.learner
    generation = engine + (kept if shared else 0.0)
    training = m.learner + (act or 0.0) + (0.0 if sleeps or not shared else engine)
    return PhaseMemory(generation, training, act)


def param_count(cfg: Config) -> float:
    """Parameters of the policy: ``model.params_b``, else counted from the model's config.json."""
    if cfg.model.params_b > 0:
        return cfg.model.params_b * 1e9
    if cfg.model.path and is_decilm(cfg.model.path):
        return float(model_params(read_decilm_config(cfg.model.path)))
    if cfg.model.path and not (Path(cfg.model.path) / "config.json").exists():
        raise ConfigError("model.params_b", f"the plan cannot size the model: {cfg.model.path} has no config.json "
                          "on this machine.", "set model.params_b=<billions of parameters>, or plan where the "
                          "model is.")
    if cfg.model.path:
        c = json.loads((Path(cfg.model.path) / "config.json").read_text())
        h, i, n, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
        kv = h * c.get("num_key_value_heads", c["num_attention_heads"]) // c["num_attention_heads"]
    else:
        t = cfg.model.tiny
        h, i, n, v = t.hidden_size, t.intermediate_size, t.num_layers, len(char_vocab())
        kv = h * t.num_kv_heads // t.num_heads
    per_layer = h * (h + 2 * kv) + h * h + 3 * h * i + 2 * h
    return float(2 * v * h + n * per_layer + h)


def sync_bytes(cfg: Config) -> float:
    """Bytes one weight sync writes to ``sync.shm_dir`` on a node (a whole copy of the policy in the
    sync's dtype: its learners remove the previous version's files before writing the next)."""
    return param_count(cfg) * _BYTES[cfg.model.dtype]


def estimate_memory(cfg: Config) -> MemoryEstimate:
    """Per-device memory of learner and engine for ``cfg`` (see the module docstring)."""
    p = param_count(cfg)
    dp = max(learner_world_size(cfg), 1)
    stage = cfg.learner.zero_stage
    b = _BYTES[cfg.model.dtype]
    weights = p * b / (dp if stage >= 3 else 1)
    grads = p * b / (dp if stage >= 2 else 1)
    opt_bytes = 12 if b < 4 else 8  # fp32 master copy (only with 16-bit weights) + two Adam moments
    optimizer = p * opt_bytes / (dp if stage >= 1 else 1)
    # The frozen reference is sharded like the policy under ZeRO-3, whole otherwise.
    reference = (weights if stage >= 3 else p * b) if cfg.learner.reference_model else 0.0
    eb = _BYTES["fp8" if cfg.rollout.precision == "fp8" else cfg.model.dtype]
    engine_w = p * eb / cfg.rollout.tensor_parallel_size
    if cfg.cluster.device == "cpu":
        kv = float(cfg.rollout.cpu_kvcache_gib * GIB)  # VLLM_CPU_KVCACHE_SPACE
    else:
        kv = max(cfg.rollout.gpu_memory_utilization * cfg.cluster.device_memory_gib * GIB - engine_w, 0.0)
    offload = cfg.learner.offload_optimizer
    return MemoryEstimate(weights / GIB, grads / GIB, 0.0 if offload else optimizer / GIB, reference / GIB,
                          engine_w / GIB, kv / GIB, optimizer / GIB if offload else 0.0)


def named_files(cfg: Config) -> list[tuple[str, str]]:
    """(field, path) of every file or directory the run would read."""
    named = [("model.path", cfg.model.path),
             ("data.file.path", cfg.data.file.path if cfg.data.source == "file" else None),
             ("sft.data", cfg.sft.data if "sft" in cfg.stages and cfg.sft.source == "file" else None),
             ("distill.data", cfg.distill.data if "distill" in cfg.stages else None),
             ("distill.teacher_path", cfg.distill.teacher_path if "distill" in cfg.stages else None)]
    return [(field, path) for field, path in named if path]


def files_here(cfg: Config) -> bool:
    """Whether the run names files and every one is on this machine: a dry run then reads and checks
    them as a launch would (``rlplat.preflight``); else it reads none (they name the cluster's)."""
    named = named_files(cfg)
    return bool(named) and all(Path(path).exists() for _, path in named)


def _files_line(cfg: Config) -> str:
    """The files the run would read, whether each is on this machine, and whether they were read."""
    present = [f"{field}={path} ({'here' if Path(path).exists() else 'not on this machine'})"
               for field, path in named_files(cfg)]
    if files_here(cfg):
        return f"Files (read and checked as a launch would): {'; '.join(present)}"
    return f"Files (not read by a dry run unless all are here): {'; '.join(present) if present else 'none named'}"


def describe(cfg: Config) -> str:
    """The dry-run text: plan, layout, per-device memory."""
    plan = plan_placement(cfg.cluster, cfg.rollout)
    c, g, r = cfg.cluster, cfg.grpo, cfg.rollout
    m = estimate_memory(cfg)
    per_node = c.devices_per_node
    engines_per_node = max(plan.num_engines // c.num_nodes, 1)
    learners_per_node = max(plan.num_learners // c.num_nodes, 1)
    steps = num_optimizer_steps(g.prompts_per_step, g.samples_per_prompt, g.global_batch)
    sleeps = c.device == "gpu" and c.colocate and r.sleep_between_phases
    phases = phase_memory(cfg, m)
    lines = [
        f"rlplat dry run: experiment '{cfg.experiment}' (config valid; nothing started)",
        _files_line(cfg),
        f"Cluster: {c.num_nodes} node(s) x {per_node} {c.device.upper()} = {c.num_nodes * per_node} devices, "
        f"{'co-located' if c.colocate else 'separate'} learners and engines, placement {c.placement_strategy}",
        f"Per node: {learners_per_node} learner rank(s), {engines_per_node} vLLM engine(s) "
        f"(TP={r.tensor_parallel_size}); {len(plan.bundles) // c.num_nodes} bundle(s) of {plan.bundles[0]}",
        f"Learners: DeepSpeed ZeRO-{cfg.learner.zero_stage}, {_parallel_words(cfg, plan.num_learners)}, "
        f"{cfg.model.dtype} weights, micro-batch {cfg.learner.micro_batch_size}",
        f"Engines: {plan.num_engines} x vLLM TP{r.tensor_parallel_size}, generation "
        f"{'fp8' if r.precision == 'fp8' else cfg.model.dtype}, temperature {r.sampling.temperature}, top_p {r.sampling.top_p}, "
        f"max {r.sampling.max_new_tokens} new tokens",
        f"GRPO step: {g.prompts_per_step} prompts x {g.samples_per_prompt} samples = "
        f"{g.prompts_per_step * g.samples_per_prompt}, global batch {g.global_batch} -> {steps} optimizer "
        f"step(s) per rollout; {g.total_steps} steps",
        f"Model: {param_count(cfg) / 1e9:.3g}B parameters",
        "Memory per device (GiB):",
        f"  learner  weights {m.weights:.2f} + grads {m.grads:.2f} + optimizer {m.optimizer:.2f} "
        f"+ reference {m.reference:.2f} = {m.learner:.2f}",
        f"  engine   weights {m.engine_weights:.2f} + KV cache {m.engine_kv:.2f}",
        _activation_line(cfg),
        f"  generation  {phases.generation:.2f} GiB (engine + "
        f"{'learners offloaded to host memory' if learners_offload(c, r, cfg.learner) else 'learner state kept'})",
        f"  training  {phases.training:.2f} GiB (learner state + activations"
        f"{'; the engine sleeps' if sleeps else ' + engine resident'})",
    ]
    if m.host_optimizer:
        lines.append(f"  host     optimizer state offloaded to CPU memory: {m.host_optimizer:.2f} per rank")
    if c.device == "cpu":
        lines.append("  (CPU run: 'device' memory is host RAM shared by all actors of the node)")
    else:
        lines += _fit_warnings(cfg, phases)
    return "\n".join(lines)


def _parallel_words(cfg: Config, ranks: int) -> str:
    n = cfg.learner.sequence_parallel
    if n == 1:
        return f"data parallel {ranks}"
    return f"data parallel {ranks // n} x sequence parallel {n} (Ulysses) = {ranks} ranks"


def _activation_line(cfg: Config) -> str:
    on, off = activation_gib(cfg, True), activation_gib(cfg, False)
    if on is None or off is None:
        return "  activations  unknown (set model.hidden_size, model.num_layers and model.vocab_size)"
    used = "with" if cfg.model.gradient_checkpointing else "without"
    n = cfg.learner.sequence_parallel
    split = f", each sequence split over {n} ranks" if n > 1 else ""
    return (f"  activations  {on if cfg.model.gradient_checkpointing else off:.2f} per micro-batch at "
            f"{cfg.rollout.max_model_len} tokens{split}, {used} gradient checkpointing (with {on:.2f}, "
            f"without {off:.2f})")


def _fit_warnings(cfg: Config, phases: PhaseMemory) -> list[str]:
    """A WARNING per phase over ``cluster.device_memory_gib``, with what would lower it."""
    limit, out = cfg.cluster.device_memory_gib, []
    for phase, gib in (("generation", phases.generation), ("training", phases.training)):
        if gib > limit:
            out.append(f"  WARNING: {phase} needs {gib:.2f} GiB of {limit:g}: does not fit")
    if out:
        hints = [h for h, applies in (
            ("learner.zero_stage=3", cfg.learner.zero_stage < 3),
            ("learner.offload_optimizer=true", not cfg.learner.offload_optimizer),
            ("model.gradient_checkpointing=true", not cfg.model.gradient_checkpointing),
            ("a smaller learner.micro_batch_size or learner.max_tokens_per_micro_batch",
             cfg.learner.micro_batch_size > 1 or bool(cfg.learner.max_tokens_per_micro_batch)),
            (_sequence_parallel_hint(cfg, phases), True)) if applies]
        out.append(f"  to fit: {', '.join(hints)}")
    return out


def sequence_parallel_fit(cfg: Config, phases: PhaseMemory) -> tuple[int, float] | None:
    """The smallest ``learner.sequence_parallel`` (a power of 2 up to the ranks of a node, so that the
    all-to-alls stay inside it) that brings the training phase within ``cluster.device_memory_gib``,
    and the training GiB then: each rank keeps the activations of 1/N of every sequence. None:
    activations unknown, or no such N."""
    if phases.activations is None:
        return None
    whole = phases.activations * cfg.learner.sequence_parallel  # the activations of unsplit sequences
    rest = phases.training - phases.activations
    n = 1
    while n <= cfg.cluster.devices_per_node:
        if rest + whole / n <= cfg.cluster.device_memory_gib:
            return n, rest + whole / n
        n *= 2
    return None


def _sequence_parallel_hint(cfg: Config, phases: PhaseMemory) -> str:
    """The "to fit" words for sequence parallelism, with the size that would fit if one does."""
    fit = sequence_parallel_fit(cfg, phases)
    if fit is None or fit[0] <= cfg.learner.sequence_parallel:
        return "shorter sequences (rollout.max_model_len): sequence parallelism within a node does not suffice"
    return f"learner.sequence_parallel={fit[0]} (each sequence split over {fit[0]} ranks: training {fit[1]:.2f} GiB)"
