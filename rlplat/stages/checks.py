"""Launch-time checks a stage declares for itself, and the helpers they share with ``rlplat.preflight``.

A stage class may define ``preflight(self, cfg) -> None``: the launcher calls it for every stage
of ``cfg.stages`` (in order, before Ray starts, except on a dry run, whose files are usually another
machine's) and it raises ``ConfigError`` for the first problem with what that stage reads: its
model directories, its data files. A stage whose class sets ``starts_engines = True`` generates
with the rollout engines, so the Llamas rlplat builds in the run must be servable by them
(``check_cpu_head_sizes``).
"""

from __future__ import annotations

import os
from pathlib import Path

from rlbase import FieldError
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config, ModelShape
from rlplat.models.decilm_format import is_decilm, read_decilm_config
from rlplat.stages import STAGES


def stage_preflight(cfg: Config) -> None:
    """Run the ``preflight`` check of every stage of ``cfg.stages`` that declares one, in order.

    Raises:
        ConfigError: the first problem a stage found (a plain ``FieldError`` is turned into one).
    """
    for name in cfg.stages:
        check = getattr(STAGES.resolve(name).target(), "preflight", None)
        if check is None:
            continue
        try:
            check(cfg)
        except FieldError as err:
            raise ConfigError.wrap(err) from err


def starts_engines(cfg: Config) -> bool:
    """Whether a stage of ``cfg.stages`` generates with the rollout engines (``starts_engines``)."""
    return any(getattr(STAGES.resolve(name).target, "starts_engines", False) for name in cfg.stages)


def check_model_dir(field: str, path: str | None, fix: str) -> None:
    """A complete Hugging Face model directory at ``path`` (unset: nothing to check): config.json
    and a tokenizer that loads; a DeciLM directory must also be one vLLM serves.

    Raises:
        ConfigError: at ``field``, with ``fix`` for a missing directory or config.json.
    """
    if not path:
        return
    p = Path(path)
    if not (p / "config.json").is_file():
        if not p.exists() and _looks_like_a_hub_id(path):
            raise ConfigError(field, f"{path} is not a local directory; it looks like a Hugging Face Hub id, "
                              "and runs never download (the hubs are offline in every actor).",
                              f"download it first: huggingface-cli download {path} --local-dir models/"
                              f"{path.split('/')[-1]}, then set {field}=models/{path.split('/')[-1]}.")
        raise ConfigError(field, f"{p} is not a Hugging Face model directory (no config.json"
                          f"{'' if p.exists() else '; the path does not exist'}).", fix)
    if not os.access(p / "config.json", os.R_OK):
        raise ConfigError(field, f"{p}/config.json is not readable.", "fix the permissions.")
    if not any(next(p.glob(pattern), None) for pattern in WEIGHT_FILES):
        raise ConfigError(field, f"{p} has config.json but no weights (none of {', '.join(WEIGHT_FILES)}).",
                          "copy the weight files into it (a partial download or a copy of the configs "
                          "only leaves them out), or point it at the complete directory.")
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


def check_prompts_fit(cfg: Config, model_path: str | None = None) -> None:
    """Tokenize the RL prompts with the tokenizer of ``model_path`` (default ``model.path``): a
    prompt longer than ``rollout.max_model_len - rollout.sampling.max_new_tokens`` is refused now,
    not once Ray and the stage have started. Without a model directory (the tiny default, built at
    run time, whose prompts the config sizes) there is nothing to check here. The model directory
    itself was checked first (``check_model_dir``).

    Raises:
        ConfigError: at ``rollout.max_model_len`` for a prompt too long, or the dataset's own error.
    """
    path = model_path or cfg.model.path
    if not path:
        return
    from transformers import AutoTokenizer

    from rlplat.runtime.prompts import load_prompt_sets

    load_prompt_sets(cfg, AutoTokenizer.from_pretrained(path))


# What a Hugging Face model directory's weights are called (single file, shards, their indexes).
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")


def _looks_like_a_hub_id(path: str) -> bool:
    """``org/name`` as the Hub spells a repository (not a path anyone would write for a directory)."""
    parts = path.split("/")
    return len(parts) == 2 and all(parts) and not path.startswith((".", "~")) and " " not in path


def check_cpu_head_sizes(cfg: Config, shapes: list[tuple[str, ModelShape]]) -> None:
    """The Llamas of ``shapes`` (config field, shape) that rlplat builds must be servable by vLLM's
    CPU engines when a stage of the run starts them.

    The default shape is left out (the tests run it), which spares most launches the seconds that
    importing vLLM takes.

    Raises:
        ConfigError: at ``<field>.num_heads`` for a head size the CPU engines do not run.
    """
    shapes = [(field, shape) for field, shape in shapes if shape != ModelShape()]
    if cfg.cluster.device != "cpu" or not shapes or not starts_engines(cfg):
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
