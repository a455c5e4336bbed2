"""Prefilter stage (LN §5.1, "data filtering"): drop the prompts a reference model already solves.

A reference model (``prefilter.model_path``, or the stage's input model) samples
``prefilter.samples`` responses per training prompt with GRPO's sampling parameters, the configured
reward scores them, and ``curricula.prefilter`` drops the prompts at or above
``prefilter.drop_at_or_above`` (the paper: LN-Super, 8 samples, 0.75). Held-out evaluation prompts
(``grpo.eval_prompts``) are never sampled. Outputs, under ``<run_dir>/prefilter/``:

* ``pass_rates.jsonl``: the pass-rate table (seeds the curriculum's store),
* ``kept_uids.txt``: the uids of the training prompts that survive, one a line (``data.keep_uids``),
* ``dataset.jsonl``: file datasets only, the kept rows (every row with no verdict is kept too),
* ``summary.json``: counts and settings.

A GRPO stage later in the same pipeline picks up the table and the kept uids by itself
(``curriculum_inputs``). The stage changes no weights, so it returns its input model directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curricula import PassRateStore, PrefilterResult, prefilter, write_filtered_dataset, write_pass_rate_table
from rlplat.config.schema import Config
from rlplat.stages.cluster import StageActors
from rlplat.stages.context import StageContext, read_manifest
from rlplat.stages.grpo_batch import make_requests, outcomes
from rlplat.stages.prompts import dataset_config, load_prompt_split, tokenize_prompts
from rlplat.types import PromptItem

log = logging.getLogger(__name__)

# GRPO steps count from 1: step 0 gives the prefilter's sampling seeds their own stream.
_SEED_STEP = 0


@dataclass(frozen=True)
class PrefilterOutputs:
    """Where a prefilter stage writes in a run directory."""

    table: Path
    kept_uids: Path
    dataset: Path
    summary: Path

    @classmethod
    def in_run(cls, run_dir: Path) -> PrefilterOutputs:
        """The output paths of a prefilter stage run in ``run_dir``."""
        d = run_dir / "prefilter"
        return cls(d / "pass_rates.jsonl", d / "kept_uids.txt", d / "dataset.jsonl", d / "summary.json")


@dataclass(frozen=True)
class CurriculumInputs:
    """What the GRPO stage reads: the uid list to train on and the table seeding the curriculum.

    Attributes:
        keep_uids: File of the uids to train on (None: every training prompt).
        pass_rate_table: Pass-rate table (None: the curriculum starts with an empty store).
    """

    keep_uids: str | None
    pass_rate_table: str | None


def curriculum_inputs(cfg: Config, run_dir: Path) -> CurriculumInputs:
    """``data.keep_uids`` and ``curriculum.pass_rate_table``; each one unset falls back to the output
    of a prefilter stage that finished in ``run_dir`` (its manifest exists), else stays None."""
    ran = read_manifest(run_dir, "prefilter") is not None
    out = PrefilterOutputs.in_run(run_dir)
    return CurriculumInputs(
        keep_uids=cfg.data.keep_uids or (str(out.kept_uids) if ran else None),
        pass_rate_table=cfg.curriculum.pass_rate_table or (str(out.table) if ran else None),
    )


class PrefilterStage:
    """Samples, scores and filters the training prompts; returns the input model unchanged."""

    name = "prefilter"

    def run(self, ctx: StageContext) -> str:
        from transformers import AutoTokenizer

        cfg, p = ctx.cfg, ctx.cfg.prefilter
        reference = p.model_path or ctx.model_path
        tokenizer = AutoTokenizer.from_pretrained(reference)
        items = load_prompt_split(cfg, tokenizer).train
        r = cfg.rollout
        token_ids = tokenize_prompts(items, tokenizer, r.max_model_len - r.sampling.max_new_tokens)
        # No learners: this stage only generates and scores.
        with StageActors(cfg, reference, cfg.learner.lr, learners=False) as actors:
            store = _sample_and_score(cfg, actors, items, token_ids)
        result = prefilter(store, drop_at_or_above=p.drop_at_or_above, drop_zero=p.drop_zero)
        _write_outputs(ctx, reference, items, store, result)
        log.info("prefilter: %s", result.summary())
        return ctx.model_path


def _sample_and_score(cfg: Config, actors: StageActors, items: Sequence[PromptItem],
                      token_ids: Sequence[tuple[int, ...]]) -> PassRateStore:
    """``prefilter.samples`` scored responses per prompt, in calls of ``prefilter.prompts_per_call``
    prompts; returns their counts as a store."""
    from tqdm import tqdm

    assert actors.rollouts is not None and actors.scorer is not None
    p, t = cfg.prefilter, cfg.timeouts
    store = PassRateStore()
    attempts = successes = 0
    bar = tqdm(total=len(items), desc="prefilter", unit="prompt", dynamic_ncols=True, mininterval=2.0)
    with bar:
        for start in range(0, len(items), p.prompts_per_call):
            chunk = list(items[start:start + p.prompts_per_call])
            requests = make_requests(chunk, token_ids[start:start + len(chunk)], cfg.seed, _SEED_STEP, 0)
            samples = actors.rollouts.generate(requests, p.samples, cfg.rollout.sampling, t.generate_s)
            scored, _ = actors.scorer.score(chunk, samples, t.reward_s)
            groups = outcomes(scored)
            store.update(groups)
            attempts += sum(g.n for g in groups)
            successes += sum(g.successes for g in groups)
            bar.update(len(chunk))
            bar.set_postfix(pass_rate=f"{successes / attempts:.3f}", refresh=False)
    return store


def _write_outputs(ctx: StageContext, reference: str, items: Sequence[PromptItem], store: PassRateStore,
                   result: PrefilterResult) -> None:
    """Table, kept uids, summary and (file datasets) the filtered dataset; each written atomically."""
    cfg, p = ctx.cfg, ctx.cfg.prefilter
    out = PrefilterOutputs.in_run(ctx.run_dir)
    write_pass_rate_table(store, out.table)
    dropped = result.dropped
    _write_text(out.kept_uids, "".join(f"{it.uid}\n" for it in items if it.uid not in dropped))
    summary: dict[str, Any] = {
        **result.summary(), "prefilter/pass_rate": _mean_rate(store), "samples": p.samples,
        "drop_at_or_above": p.drop_at_or_above, "drop_zero": p.drop_zero, "reference_model": reference,
    }
    if cfg.data.source == "file":
        summary["dataset_rows"] = _write_filtered_file(cfg, result, out.dataset)
    _write_text(out.summary, json.dumps(summary, indent=2) + "\n")


def _write_filtered_file(cfg: Config, result: PrefilterResult, path: Path) -> int:
    """The dataset file's rows minus the dropped ones, as JSONL; returns the row count.

    Row uids come from ``load_prompts`` (``id_field``, else file name and row number). Without an
    ``id_field`` the filtered copy renumbers its rows, so its uids no longer match the table: train
    on it with ``data.file.id_field`` set, or use the original file with ``data.keep_uids``.
    """
    from rlplat.data.datasets import load_prompts, read_rows

    dcfg = dataset_config(cfg)
    uid_at = {it.index: it.uid for it in load_prompts(dcfg, tokenizer=None)}
    if dcfg.id_field is None:
        log.warning("prefilter: data.file.id_field is unset, so %s keys rows by row number; its uids "
                    "do not match the pass-rate table (see rlplat/stages/prefilter.py)", path)
    return write_filtered_dataset(read_rows(dcfg), result, path, uid_of=lambda i, _row: uid_at[i])


def _mean_rate(store: PassRateStore) -> float:
    rows = store.table_rows()
    return sum(r["successes"] for r in rows) / max(sum(r["attempts"] for r in rows), 1)


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
