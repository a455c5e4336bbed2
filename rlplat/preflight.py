"""Launch-time checks that need more than the config: plugins, files, the machine. Before Ray starts.

``rlplat.config.validate`` checks the config alone; ``preflight`` then resolves every component the
config names (stages, advantage estimator, reward components and their options, the curriculum and
its options), reads the model and dataset files, and compares the plan with the local machine.
Every problem is a ``ConfigError`` (exit code 2). A dry run checks the components only: its model
and data paths usually name another machine's files.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from rlbase import FieldError
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config
from rlplat.models.decilm_format import is_decilm, read_decilm_config

T = TypeVar("T")


def preflight(cfg: Config) -> None:
    """Raise ``ConfigError`` for the first problem found."""
    _check_components(cfg)
    if cfg.dry_run:
        return
    if not cfg.cluster.address:
        _check_local_resources(cfg)
    _check_paths(cfg)


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
    _check_model_dir("model.path", cfg.model.path, "point model.path at a local directory with config.json, "
                     "weights and tokenizer.")
    if "distill" in cfg.stages:
        _check_distill_paths(cfg)
    _check_cpu_head_sizes(cfg)
    if "prefilter" in cfg.stages:
        _check_model_dir("prefilter.model_path", cfg.prefilter.model_path, "point it at the reference model, "
                         "or set it to null to prefilter with the stage's input model.")
    if cfg.data.source == "file":
        from rlplat.data.datasets import DataError, validate_dataset_file

        try:
            validate_dataset_file(cfg.data.file)
        except DataError as err:
            raise ConfigError("data.file", str(err), "correct the file or the data.file field mapping.") from err
    if "sft" in cfg.stages and cfg.sft.source == "file":
        from rlplat.data.datasets import DataError
        from rlplat.data.sft import check_sft_file

        if not cfg.sft.data:
            raise ConfigError("sft.data", "the sft stage needs a data file.", "set sft.data to a .jsonl, .json "
                              "or .parquet file of input/output/reasoning rows (rlplat/data/sft.py).")
        try:
            check_sft_file(cfg.sft.data, cfg.sft.eval_rows)
        except DataError as err:
            raise ConfigError("sft.data", str(err), "correct the file (rlplat/data/sft.py states the rules).") from err
    for field, path, what in (("data.keep_uids", cfg.data.keep_uids, "the kept_uids.txt"),
                              ("curriculum.pass_rate_table", cfg.curriculum.pass_rate_table, "the pass-rate table")):
        if path and not Path(path).is_file():
            raise ConfigError(field, f"{path} does not exist.", f"point it at {what} a prefilter run wrote, or "
                              "set it to null.")


def _check_model_dir(field: str, path: str | None, fix: str) -> None:
    """A complete Hugging Face model directory: config.json and a tokenizer that loads."""
    if not path:
        return
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ConfigError(field, f"{p} is not a Hugging Face model directory (no config.json"
                          f"{'' if p.exists() else '; the path does not exist'}).", fix)
    if not os.access(p / "config.json", os.R_OK):
        raise ConfigError(field, f"{p}/config.json is not readable.", "fix the permissions.")
    if is_decilm(p):
        try:
            read_decilm_config(p)
        except ValueError as err:
            raise ConfigError(field, f"{p} is a DeciLM model that rlplat and vLLM cannot serve: {err}.",
                              "correct its config.json (block_configs: see rlplat/models/decilm.py) or "
                              "write the model again with rlplat.models.decilm.save_decilm.") from err
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(str(p))
    except Exception as err:  # whatever transformers raises, the directory is unusable
        raise ConfigError(field, f"{p} holds no loadable tokenizer ({type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no message'}).",
                          "copy the tokenizer files (tokenizer.json, tokenizer_config.json, ...) of the model "
                          "it was trained from into it.") from err


def _check_distill_paths(cfg: Config) -> None:
    d = cfg.distill
    _check_model_dir("distill.teacher_path", d.teacher_path, "point it at the teacher's model directory, or set "
                     "it to null to distil from the stage's input model.")
    if d.student not in ("input", "new"):
        _check_model_dir("distill.student", d.student, "use input, new, or a model directory.")
    if d.student == "new":
        student = None  # built from the teacher's vocabulary when the stage starts
    elif d.student == "input":
        # Known before Ray only when distillation is the first stage and starts from model.path.
        student = cfg.model.path if cfg.stages[0] == "distill" else None
    else:
        student = d.student
    if d.teacher_path and student:
        from rlplat.stages.distill import check_same_vocabulary

        check_same_vocabulary(d.teacher_path, student)
    if d.data is not None:
        from rlplat.data.datasets import DataError
        from rlplat.data.text import check_text_file

        try:
            check_text_file(d.data, d.text_field, d.eval_rows)
        except DataError as err:
            raise ConfigError("distill.data", str(err), f"correct the file: every row needs a non-empty "
                              f"'{d.text_field}' string (distill.text_field).") from err


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


def _check_cpu_head_sizes(cfg: Config) -> None:
    """The Llamas rlplat builds must be servable by vLLM's CPU engines when a later stage starts them.

    The default shape is left out (the tests run it), which spares most launches the seconds that
    importing vLLM takes.
    """
    from rlplat.config.schema import ModelShape

    engines = {"sft", "prefilter", "grpo"} & set(cfg.stages)
    if cfg.cluster.device != "cpu" or not engines:
        return
    shapes = [] if cfg.model.path else [("model.tiny", cfg.model.tiny)]
    if "distill" in cfg.stages and cfg.distill.student == "new":
        shapes.append(("distill.student_shape", cfg.distill.student_shape))
    shapes = [(field, shape) for field, shape in shapes if shape != ModelShape()]
    if not shapes:
        return
    from rlplat.rollout.worker import cpu_head_sizes

    sizes = cpu_head_sizes()
    for field, shape in shapes:
        head = shape.hidden_size // shape.num_heads
        if head not in sizes:
            raise ConfigError(f"{field}.num_heads", f"hidden_size {shape.hidden_size} / num_heads {shape.num_heads} "
                              f"gives attention heads of {head}, which vLLM's CPU engines do not run (sizes "
                              f"{', '.join(map(str, sizes))}).", "choose num_heads so that hidden_size / num_heads "
                              "is one of those sizes.")
