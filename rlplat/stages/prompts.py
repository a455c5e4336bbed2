"""Prompt sets for RL stages: the built-in synthetic task or a local dataset file, tokenised."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class PromptSplit:
    """The RL prompts of a run: those trained on, and those held out for evaluation.

    Attributes:
        train: Prompts the RL stages (prefilter, GRPO) may use, in dataset order.
        held_out: ``grpo.eval_prompts`` prompts never trained on, in dataset order.
    """

    train: tuple[PromptItem, ...]
    held_out: tuple[PromptItem, ...]


def split_held_out(items: Sequence[PromptItem], count: int, seed: int) -> PromptSplit:
    """Hold ``count`` prompts, chosen at random from ``seed`` alone, out of training.

    The choice depends only on the prompts and the seed (never on a prefilter or curriculum), so
    every run of an experiment with the same seed evaluates on the same prompts.
    """
    if count <= 0:
        return PromptSplit(tuple(items), ())
    if count >= len(items):
        raise ConfigError("grpo.eval_prompts", f"holding out {count} of {len(items)} prompts leaves none to "
                          "train on.", "lower grpo.eval_prompts or use a larger dataset.")
    chosen = set(random.Random(f"held-out|{seed}").sample(range(len(items)), count))
    return PromptSplit(tuple(it for i, it in enumerate(items) if i not in chosen),
                       tuple(it for i, it in enumerate(items) if i in chosen))


def load_prompt_split(cfg: Config, tokenizer: Any) -> PromptSplit:
    """``load_rl_prompts`` split by ``split_held_out(grpo.eval_prompts, seed)``."""
    return split_held_out(load_rl_prompts(cfg, tokenizer), cfg.grpo.eval_prompts, cfg.seed)


def read_uid_list(path: str | Path) -> frozenset[str]:
    """The uids of a uid list file: one a line, blank lines and surrounding spaces ignored."""
    return frozenset(line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip())


def keep_listed(items: Sequence[PromptItem], keep_uids: str | None) -> list[PromptItem]:
    """The prompts whose uid the file ``keep_uids`` lists (all of them when it is None)."""
    if keep_uids is None:
        return list(items)
    keep = read_uid_list(keep_uids)
    kept = [it for it in items if it.uid in keep]
    if not kept:
        raise ConfigError("data.keep_uids", f"{keep_uids} lists none of the {len(items)} training prompts' uids.",
                          "point it at the kept_uids.txt of a prefilter run over the same data and seed.")
    return kept


def tokenize_prompts(items: Sequence[PromptItem], tokenizer: Any, max_prompt_tokens: int) -> list[tuple[int, ...]]:
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
