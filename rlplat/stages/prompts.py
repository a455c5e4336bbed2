"""Prompt sets for RL stages: the built-in synthetic task or a local dataset file, tokenised."""

from __future__ import annotations

from typing import Any

from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config
from rlplat.data.synthetic import split_problems, to_prompt_items
from rlplat.types import PromptItem


def dataset_config(cfg: Config) -> Any:
    """``DatasetConfig`` of ``data.file``; bad fields become a ``ConfigError``."""
    from rlplat.data.datasets import DataError, DatasetConfig

    fields = dict(cfg.data.file)
    if "metadata_fields" in fields:
        fields["metadata_fields"] = tuple(fields["metadata_fields"])
    try:
        return DatasetConfig(**fields)
    except TypeError as err:
        raise ConfigError("data.file", str(err) + ".", "use the fields of rlplat.data.datasets.DatasetConfig "
                          "(path, prompt_field, answer_field, system_field, id_field, metadata_fields, "
                          "answer_format, thinking, limit, instruction_suffix).") from err
    except DataError as err:
        raise ConfigError("data.file", str(err), "correct the dataset settings.") from err


def load_rl_prompts(cfg: Config, tokenizer: Any) -> list[PromptItem]:
    """The prompts GRPO samples from (synthetic: the held-out problems, never the warm-start ones)."""
    if cfg.data.source == "synthetic":
        s = cfg.data.synthetic
        _, rl = split_problems(s.digits, s.num_train, s.num_rl, cfg.seed)
        return to_prompt_items(rl, tokenizer)
    from rlplat.data.datasets import load_prompts

    return load_prompts(dataset_config(cfg), tokenizer)


def tokenize_prompts(items: list[PromptItem], tokenizer: Any, max_prompt_tokens: int) -> list[tuple[int, ...]]:
    """Token ids of each prompt; a prompt longer than ``max_prompt_tokens`` is a ``ConfigError``."""
    out = []
    for it in items:
        ids = tuple(tokenizer(it.text, add_special_tokens=False)["input_ids"])
        if len(ids) > max_prompt_tokens:
            raise ConfigError("rollout.max_model_len", f"prompt {it.uid} has {len(ids)} tokens, more than "
                              f"max_model_len - max_new_tokens = {max_prompt_tokens}.",
                              "raise rollout.max_model_len, lower rollout.sampling.max_new_tokens, or "
                              "drop long prompts from the dataset.")
        out.append(ids)
    return out
