"""Prompt sets for the RL stages: the built-in synthetic task or a local dataset file, tokenised once.

``load_prompt_sets`` gives the prompts a stage trains on and the held-out ones it evaluates on; the
choice of held-out prompts depends only on the data and the seed, so every run of an experiment
with the same seed evaluates on the same prompts.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlplat.algo.grpo import make_requests
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config
from rlplat.data.chat import encode
from rlplat.data.synthetic import split_problems, to_prompt_items
from rlplat.types import GenerationRequest, PromptItem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptSet:
    """Prompts and their token ids, position for position; ``dropped``: uids of prompts the
    tokenizer failed on, left out."""

    items: tuple[PromptItem, ...]
    token_ids: tuple[tuple[int, ...], ...]
    dropped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def uids(self) -> list[str]:
        """The prompts' uids, in order (what a curriculum indexes)."""
        return [it.uid for it in self.items]

    def requests(self, idx: Sequence[int], seed: int, step: int, attempt: int) -> tuple[
            list[PromptItem], list[GenerationRequest]]:
        """The prompts at ``idx`` and their generation requests, seeded by ``(seed, step, uid, attempt)``."""
        items = [self.items[i] for i in idx]
        return items, make_requests(items, [self.token_ids[i] for i in idx], seed, step, attempt)


def load_prompt_sets(cfg: Config, tokenizer: Any, keep_uids: str | None = None) -> tuple[PromptSet, PromptSet]:
    """``(train, held_out)``: the RL prompts minus ``grpo.eval_prompts`` held out at random (from
    the seed alone), the train prompts restricted to the uids listed in ``keep_uids`` if given.

    Raises:
        ConfigError: bad dataset, nothing left to train on, or a prompt too long for the engine.
    """
    items = load_rl_prompts(cfg, tokenizer)
    train, held_out = split_held_out(items, cfg.grpo.eval_prompts, cfg.seed)
    train = keep_listed(train, keep_uids)
    limit = cfg.rollout.max_model_len - cfg.rollout.sampling.max_new_tokens
    return tokenize(train, tokenizer, limit), tokenize(held_out, tokenizer, limit)


def load_rl_prompts(cfg: Config, tokenizer: Any) -> list[PromptItem]:
    """The prompts RL stages sample from (synthetic: the RL problems, never the warm-start ones)."""
    if cfg.data.source == "synthetic":
        _, rl = split_problems(cfg.data.synthetic, cfg.seed)
        return to_prompt_items(rl, tokenizer)
    from rlplat.data.datasets import DataError, load_prompts

    try:
        return load_prompts(cfg.data.file, tokenizer)
    except DataError as err:
        raise ConfigError("data.file", str(err), "correct the file or the data.file field mapping.") from err


def split_held_out(items: Sequence[PromptItem], count: int, seed: int) -> tuple[list[PromptItem], list[PromptItem]]:
    """Hold ``count`` prompts, chosen at random from ``seed`` alone, out of training; both in data order."""
    if count <= 0:
        return list(items), []
    if count >= len(items):
        raise ConfigError("grpo.eval_prompts", f"holding out {count} of {len(items)} prompts leaves none to "
                          "train on.", "lower grpo.eval_prompts or use a larger dataset.")
    chosen = set(random.Random(f"held-out|{seed}").sample(range(len(items)), count))
    return ([it for i, it in enumerate(items) if i not in chosen], [it for i, it in enumerate(items) if i in chosen])


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


def tokenize(items: Sequence[PromptItem], tokenizer: Any, max_prompt_tokens: int) -> PromptSet:
    """A ``PromptSet`` of ``items``; a prompt longer than ``max_prompt_tokens`` is a ``ConfigError``,
    one the tokenizer fails on is dropped with a warning (model outputs are not the only untrusted
    text: a dataset row can break a tokenizer too)."""
    kept, ids, dropped = [], [], []
    for it in items:
        try:
            tokens = encode(tokenizer, it.text)
        except Exception as err:  # noqa: BLE001 - any tokenizer failure drops the prompt, not the run
            log.warning("prompt %s: the tokenizer failed (%s); dropped", it.uid, err)
            dropped.append(it.uid)
            continue
        if len(tokens) > max_prompt_tokens:
            raise ConfigError("rollout.max_model_len", f"prompt {it.uid} has {len(tokens)} tokens, more than "
                              f"max_model_len - max_new_tokens = {max_prompt_tokens}.",
                              "raise rollout.max_model_len, lower rollout.sampling.max_new_tokens, or "
                              "drop long prompts from the dataset.")
        kept.append(it)
        ids.append(tokens)
    return PromptSet(tuple(kept), tuple(ids), tuple(dropped))
