"""Dry-run report: placement plan (actors per node, devices, parallel layout) and memory estimate.

The memory model is deliberately simple and stated in the output: weights, gradients and Adam
state (fp32 master + two moments) sharded by the ZeRO stage over the data-parallel ranks; the
rollout engine's weights split by tensor parallelism; the rest of the engine's memory share is KV
cache. Activations are not modelled (they depend on micro-batch and sequence length).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlplat.algo.batching import num_optimizer_steps
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


def param_count(cfg: Config) -> float:
    """Parameters of the policy: ``model.params_b``, else counted from the model's config.json."""
    if cfg.model.params_b > 0:
        return cfg.model.params_b * 1e9
    if cfg.model.path and is_decilm(cfg.model.path):
        return float(model_params(read_decilm_config(cfg.model.path)))
    if cfg.model.path and (Path(cfg.model.path) / "config.json").exists():
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
    peak = max(m.learner, m.engine_weights + m.engine_kv) if sleeps else m.learner + m.engine_weights + m.engine_kv
    lines = [
        f"rlplat dry run: experiment '{cfg.experiment}' (config valid; nothing started)",
        f"Cluster: {c.num_nodes} node(s) x {per_node} {c.device.upper()} = {c.num_nodes * per_node} devices, "
        f"{'co-located' if c.colocate else 'separate'} learners and engines, placement {c.placement_strategy}",
        f"Per node: {learners_per_node} learner rank(s), {engines_per_node} vLLM engine(s) "
        f"(TP={r.tensor_parallel_size}); {len(plan.bundles) // c.num_nodes} bundle(s) of {plan.bundles[0]}",
        f"Learners: DeepSpeed ZeRO-{cfg.learner.zero_stage}, data parallel {plan.num_learners}, "
        f"{cfg.model.dtype} weights, micro-batch {cfg.learner.micro_batch_size}",
        f"Engines: {plan.num_engines} x vLLM TP{r.tensor_parallel_size}, generation "
        f"{'fp8' if r.precision == 'fp8' else cfg.model.dtype}, temperature {r.sampling.temperature}, top_p {r.sampling.top_p}, "
        f"max {r.sampling.max_new_tokens} new tokens",
        f"GRPO step: {g.prompts_per_step} prompts x {g.samples_per_prompt} samples = "
        f"{g.prompts_per_step * g.samples_per_prompt}, global batch {g.global_batch} -> {steps} optimizer "
        f"step(s) per rollout; {g.total_steps} steps",
        f"Model: {param_count(cfg) / 1e9:.3g}B parameters",
        "Memory per device (GiB, activations not included):",
        f"  learner  weights {m.weights:.2f} + grads {m.grads:.2f} + optimizer {m.optimizer:.2f} "
        f"+ reference {m.reference:.2f} = {m.learner:.2f}",
        f"  engine   weights {m.engine_weights:.2f} + KV cache {m.engine_kv:.2f}",
        f"  peak     {peak:.2f} of {c.device_memory_gib:g} "
        f"({'engine sleeps while learners train' if sleeps else 'learner and engine both resident'})",
    ]
    if m.host_optimizer:
        lines.append(f"  host     optimizer state offloaded to CPU memory: {m.host_optimizer:.2f} per rank")
    if c.device == "cpu":
        lines.append("  (CPU run: 'device' memory is host RAM shared by all actors of the node)")
    elif peak > c.device_memory_gib:
        lines.append("  WARNING: the estimate exceeds device memory; raise ZeRO stage, offload, or add devices.")
    return "\n".join(lines)
