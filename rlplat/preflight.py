"""Launch-time checks that need more than the config: plugins, files, the machine. Before Ray starts.

``rlplat.config.validate`` checks the config alone; ``preflight`` then resolves every component the
config names (stages, advantage estimator, reward components and their options, the curriculum and
its options), reads the model and dataset files, runs the checks each stage declares for what it
reads (its ``preflight`` method: ``rlplat.stages.checks``), and compares the plan with the local
machine. Every problem is a ``ConfigError`` (exit code 2). A dry run checks the components, and
the files only when every one it names is on this machine (its paths usually name a cluster's).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from rlbase import FieldError
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config
from rlplat.models.decilm_format import is_decilm, read_decilm_config
from rlplat.runtime.plan_report import files_here
from rlplat.stages.checks import check_cpu_head_sizes, check_model_dir, stage_preflight

T = TypeVar("T")


def preflight(cfg: Config) -> None:
    """Raise ``ConfigError`` for the first problem found."""
    _check_components(cfg)
    if cfg.dry_run:
        if files_here(cfg):
            _check_paths(cfg)
        return
    if not cfg.cluster.address:
        _check_local_resources(cfg)
    _check_paths(cfg)
    if not cfg.cluster.address:
        check_shm(cfg)  # after the model directory is known to be readable: it sizes the sync


def _resolving(field: str, fix: str, fn: Callable[[], T]) -> T:
    """``fn()``, with a plugin or option error turned into a ``ConfigError`` at ``field``."""
    try:
        return fn()
    except FieldError as err:
        raise ConfigError.wrap(err) from err
    except Exception as err:
        raise ConfigError(field, str(err).rstrip(".") + ".", fix) from err


def _check_components(cfg: Config) -> None:
    from curricula import curriculum_options
    from rewards import build_reward
    from rlplat.algo.advantages import resolve_estimator
    from rlplat.faults import parse_faults
    from rlplat.runtime.scorer import reward_spec
    from rlplat.stages import STAGES

    for name in cfg.stages:
        _resolving("stages", f"use stages from {', '.join(STAGES.names())}, or an import path to your stage class.",
                   partial(STAGES.resolve, name))
    _resolving("grpo.advantage", "use grpo, dr_grpo, rloo, or an import path to your estimator.",
               lambda: resolve_estimator(cfg.grpo.advantage))
    _resolving("reward.components", "use registered reward names, list the module that registers yours in "
               "reward.modules, or give a dotted import path.", lambda: build_reward(reward_spec(cfg.reward)))
    _resolving("curriculum.name", "use curriculum=uniform|progressive, or curriculum.name=<import path>.",
               lambda: curriculum_options(cfg.curriculum.name, dict(cfg.curriculum.options)))
    _resolving("faults.inject", "write each fault as TARGET:KIND@PHASE:STEP or prompt:KIND@UID (rlplat/faults.py).",
               partial(parse_faults, cfg.faults.inject))
    if cfg.metrics.wandb:
        _resolving("metrics.wandb", "install it (pip install 'rlplat[wandb]'), or set metrics.wandb=false.",
                   partial(importlib.import_module, "wandb"))


def _check_paths(cfg: Config) -> None:
    check_model_dir("model.path", cfg.model.path, "point model.path at a local directory with config.json, "
                    "weights and tokenizer.")
    _check_sharded_start(cfg)
    _check_sequence_parallel_heads(cfg)
    stage_preflight(cfg)  # each stage's own files (its ``preflight`` method)
    if not cfg.model.path:
        check_cpu_head_sizes(cfg, [("model.tiny", cfg.model.tiny)])
    if cfg.data.source == "file":
        from rlplat.data.datasets import DataError, validate_dataset_file

        try:
            validate_dataset_file(cfg.data.file)
        except DataError as err:
            raise ConfigError("data.file", str(err), "correct the file or the data.file field mapping.") from err
    for field, path, what in (("data.keep_uids", cfg.data.keep_uids, "the kept_uids.txt"),
                              ("curriculum.pass_rate_table", cfg.curriculum.pass_rate_table, "the pass-rate table")):
        if path and not Path(path).is_file():
            raise ConfigError(field, f"{path} does not exist.", f"point it at {what} a prefilter run wrote, or "
                              "set it to null.")


def _check_sharded_start(cfg: Config) -> None:
    """ZeRO-3 builds the model sharded and scatters safetensors weights (rlplat/learner/zero3.py):
    a directory of .bin weights is refused here, not by every learner rank after Ray started."""
    path, learner = cfg.model.path, cfg.learner
    if path and learner.zero_stage == 3 and learner.sharded_init and not next(Path(path).glob("*.safetensors"), None):
        raise ConfigError("learner.sharded_init", f"{path} holds no .safetensors weights, and ZeRO-3 builds the "
                          "model sharded from those alone.", "save the model again with "
                          "save_pretrained(safe_serialization=True), or set learner.sharded_init=false (each "
                          "rank then loads it whole first).")


def _attention_heads(cfg: Config) -> dict[str, int]:
    """The policy's attention heads and KV heads, by their config names (a DeciLM block repeats its
    KV heads before attention, so only ``num_attention_heads`` is split there)."""
    path = cfg.model.path
    if not path:
        return {"model.tiny.num_heads": cfg.model.tiny.num_heads, "model.tiny.num_kv_heads": cfg.model.tiny.num_kv_heads}
    if is_decilm(path):
        return {"num_attention_heads": read_decilm_config(path).num_attention_heads}
    c = json.loads((Path(path) / "config.json").read_text())
    heads = c["num_attention_heads"]
    return {"num_attention_heads": heads, "num_key_value_heads": c.get("num_key_value_heads") or heads}


def _check_sequence_parallel_heads(cfg: Config) -> None:
    """Ulysses attention gives each rank of a group 1/N of the heads (rlplat/learner/ulysses.py)."""
    n = cfg.learner.sequence_parallel
    if n == 1:
        return
    for name, heads in _attention_heads(cfg).items():
        if heads % n:
            raise ConfigError("learner.sequence_parallel", f"{n} does not divide the model's {name}={heads} "
                              "(each rank of a sequence-parallel group attends with 1/N of the heads).",
                              f"choose a learner.sequence_parallel that divides {heads}.")


def _check_local_resources(cfg: Config) -> None:
    """Without ``cluster.address`` everything runs on this machine: does it have the devices?"""
    from rlplat.distributed.placement import plan_placement

    c = cfg.cluster
    if c.num_nodes > 1:
        raise ConfigError("cluster.num_nodes", f"the experiment needs {c.num_nodes} nodes x {c.devices_per_node} "
                          f"{c.device.upper()}s but no Ray cluster is configured (cluster.address is unset), "
                          "and this machine is one node.", "start a Ray cluster (see launch/ and the README) "
                          "and set cluster.address=HEAD:6379, or add dry_run=true to print the plan only.")
    need_cpus = sum(b.get("CPU", 0.0) for b in plan_placement(c, cfg.rollout).bundles)
    if need_cpus > c.num_cpus:
        raise ConfigError("cluster.devices_per_node", f"{c.devices_per_node} devices need {need_cpus:g} logical "
                          f"CPUs (one learner and one engine each) but the local Ray instance gets "
                          f"cluster.num_cpus={c.num_cpus}.", "lower cluster.devices_per_node or raise cluster.num_cpus.")
    if c.device == "gpu":
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if have < c.devices_per_node:
            raise ConfigError("cluster.devices_per_node", f"the experiment needs {c.devices_per_node} GPUs on "
                              f"this node but {have} are visible.", "run on a machine with the GPUs, join a "
                              "cluster with cluster.address, or add dry_run=true to print the plan only.")


def check_shm(cfg: Config) -> str:
    """The weight sync writes a copy of the policy to ``sync.shm_dir`` (a tmpfs, /dev/shm by default,
    64 MB in a container unless told otherwise): does it have the room? Checked before a run starts,
    not at its first sync, where a full tmpfs kills the learner writing it. Returns what was found
    (one line, for ``python -m rlplat.doctor``); raises ``ConfigError`` when the room is missing."""
    import shutil

    from rlplat.runtime.plan_report import sync_bytes
    from rlplat.sync.plan import IPC, transfer_backend

    if transfer_backend(cfg.sync, cfg.cluster.device, cfg.cluster.colocate) == IPC:
        return "no /dev/shm needed: the weights go to the engines as CUDA IPC handles (sync.backend)"
    shm, fix = cfg.sync.shm_dir, ("give the tmpfs more room (docker run --shm-size=..., or a larger /dev/shm), "
                                  "or point sync.shm_dir at a tmpfs that has it.")
    if not Path(shm).is_dir():
        raise ConfigError("sync.shm_dir", f"{shm} is not a directory.", fix)
    need, free = sync_bytes(cfg), shutil.disk_usage(shm).free
    if free < need:
        raise ConfigError("sync.shm_dir", f"{shm} has {free / 2**20:.1f} MiB free; one weight sync writes "
                          f"{need / 2**20:.1f} MiB there.", fix)
    return f"{shm} has {free / 2**20:.0f} MiB free; one weight sync writes {need / 2**20:.1f} MiB there"
