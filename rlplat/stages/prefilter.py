"""Prefilter stage (LN §5.1, "data filtering"): drop the prompts a reference model already solves.

A reference model (``prefilter.model_path``, or the stage's input model) samples
``prefilter.samples`` responses per training prompt with GRPO's sampling parameters, the configured
reward scores them, and ``curricula.prefilter`` drops the prompts at or above
``prefilter.drop_at_or_above`` (the paper: LN-Super, 8 samples, 0.75). Held-out evaluation prompts
(``grpo.eval_prompts``) are never sampled. Outputs, under ``<run_dir>/prefilter/``:

* ``pass_rates.jsonl``: the pass-rate table (seeds the curriculum's store),
* ``kept_uids.txt``: the uids of the training prompts that survive, one a line (``data.keep_uids``),
* ``dataset.jsonl``: file datasets only, the kept rows (every row with no verdict is kept too),
* ``summary.json``: counts and settings,
* ``scored.jsonl``: every generation call's scored groups, appended (fsynced) as the stage goes.
  An interrupted stage continues (``resume=DIR``) after the last call it logged, when its config
  hash is unchanged; each call's sampling seeds depend only on its prompts, so the table is the one
  an uninterrupted run writes.

Its manifest hands the table and the kept uids on as the artifacts ``PASS_RATE_TABLE`` and
``KEPT_UIDS`` (``rlplat.stages.base``), which a GRPO stage later in the pipeline uses by itself. The
stage changes no weights, so its output model is its input model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from typing_extensions import Self

from curricula import PassRateStore, PrefilterResult, prefilter, write_filtered_dataset, write_pass_rate_table
from rlbase import append_line, atomic_write, write_jsonl
from rlplat.config.schema import Config
from rlplat.faults import FaultLog
from rlplat.progress import Progress
from rlplat.runtime.pass_rates import shared_store
from rlplat.runtime.prompts import PromptSet, load_prompt_sets
from rlplat.runtime.protocols import Rollouts, Scoring
from rlplat.runtime.stage_actors import StageActors
from rlplat.stages.base import KEPT_UIDS, PASS_RATE_TABLE, StageContext, StageManifest
from rlplat.telemetry import MetricTags, run_tags, set_gauge

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
    scored: Path

    @classmethod
    def in_run(cls, run_dir: Path) -> PrefilterOutputs:
        """The output paths of a prefilter stage run in ``run_dir``."""
        d = run_dir / "prefilter"
        return cls(d / "pass_rates.jsonl", d / "kept_uids.txt", d / "dataset.jsonl", d / "summary.json",
                   d / "scored.jsonl")


class ScoredLog:
    """``scored.jsonl``: a header ``{"config_hash"}``, then one line per finished generation call,
    ``{"start": first prompt index, "groups": [[uid, attempts, successes], ...]}``, each fsynced.

    ``calls`` holds the logged calls by start index. ``open`` keeps them only when continuing an
    interrupted stage under the same config hash; otherwise the file starts over.
    """

    def __init__(self, path: Path, calls: dict[int, list[tuple[str, int, int]]], file: TextIO) -> None:
        self.path, self.calls, self.file = path, calls, file

    @classmethod
    def open(cls, path: Path, config_hash: str, resume: bool) -> ScoredLog:
        """The log at ``path``, continued (``resume`` and the same ``config_hash``) or new."""
        calls: dict[int, list[tuple[str, int, int]]] = {}
        lines = path.read_text().splitlines() if resume and path.exists() else []
        if lines and json.loads(lines[0]).get("config_hash") == config_hash:
            for line in lines[1:]:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by the crash: its call runs again
                calls[int(row["start"])] = [(str(u), int(n), int(k)) for u, n, k in row["groups"]]
        write_jsonl(path, [{"config_hash": config_hash}, *({"start": start, "groups": groups}
                                                             for start, groups in calls.items())], fsync=True)
        return cls(path, calls, open(path, "a", encoding="utf-8"))

    def store(self) -> PassRateStore:
        """The logged groups as a store (training groups, as the live calls record them)."""
        store = PassRateStore()
        for groups in self.calls.values():
            for uid, attempts, successes in groups:
                store.add(uid, attempts, successes, training=True)
        return store

    def append(self, start: int, groups: list[tuple[str, int, int]]) -> None:
        """Log the call that began at prompt ``start``."""
        self.calls[start] = groups
        append_line(self.file, json.dumps({"start": start, "groups": groups}))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


class PrefilterStage:
    """Samples, scores and filters the training prompts; hands the input model on unchanged."""

    name = "prefilter"
    config_sections = ("seed", "model", "learner", "cluster", "rollout", "reward", "prefilter", "data")
    starts_engines = True  # it samples with the rollout engines (rlplat.stages.checks)

    def preflight(self, cfg: Config) -> None:
        """Before Ray (``rlplat.stages.checks``): the reference model directory, when one is named,
        and every prompt fitting the engines' context."""
        from rlplat.stages.checks import check_model_dir, check_prompts_fit

        check_model_dir("prefilter.model_path", cfg.prefilter.model_path, "point it at the reference model, "
                        "or set it to null to prefilter with the stage's input model.")
        check_prompts_fit(cfg, cfg.prefilter.model_path)

    def run(self, ctx: StageContext) -> StageManifest:
        from transformers import AutoTokenizer

        cfg, p = ctx.cfg, ctx.cfg.prefilter
        reference = p.model_path or ctx.model_path
        prompts, _ = load_prompt_sets(cfg, AutoTokenizer.from_pretrained(reference))
        # No learners: this stage only generates and scores.
        tags = run_tags(ctx.run_dir, cfg.experiment, self.name)
        with ScoredLog.open(PrefilterOutputs.in_run(ctx.run_dir).scored, ctx.config_hash, ctx.resume) as scored, \
                StageActors(cfg, reference, cfg.learner.lr, learners=False, tags=tags) as actors:
            store = sample_and_score(cfg, actors.rollout_group, actors.reward_scorer, prompts, scored,
                                     actors.fault_log, actors.tags)
        result = prefilter(store, drop_at_or_above=p.drop_at_or_above, drop_zero=p.drop_zero)
        out = _write_outputs(ctx, reference, prompts, store, result)
        if cfg.curriculum.shared_store:
            import ray

            ray.get(shared_store(ctx.run_dir.name).reset.remote(store.table_rows()), timeout=cfg.timeouts.actor_start_s)
        log.info("prefilter: %s", result.summary())
        return StageManifest(self.name, ctx.model_path, ctx.model_path,
                             {PASS_RATE_TABLE: str(out.table), KEPT_UIDS: str(out.kept_uids)})


def sample_and_score(cfg: Config, rollouts: Rollouts, scorer: Scoring, prompts: PromptSet, scored: ScoredLog,
                     fault_log: FaultLog, tags: MetricTags | None = None) -> PassRateStore:
    """``prefilter.samples`` scored responses per prompt, in calls of ``prefilter.prompts_per_call``
    prompts, after the calls ``scored`` already holds (each new one is appended to it); returns
    their counts as a store. Call N works as step N of ``fault_log`` (``faults.inject``). Progress: a
    line at most every 5 s, and the share of prompts done as the gauge ``rlplat_prefilter_done``
    (tagged with ``tags``, as the actors' metrics are)."""
    p = cfg.prefilter
    store = scored.store()
    starts = range(0, len(prompts), p.prompts_per_call)
    if scored.calls:
        log.info("prefilter: continuing after %d logged calls (%s)", len(scored.calls), scored.path)
    logged = sum(min(p.prompts_per_call, len(prompts) - s) for s in starts if s in scored.calls)
    with Progress(PrefilterStage.name, len(prompts), logged, unit="prompt", enabled=cfg.progress, min_interval_s=5.0) as bar:
        for start in (s for s in starts if s not in scored.calls):
            idx = range(start, min(start + p.prompts_per_call, len(prompts)))
            fault_log.begin(start // p.prompts_per_call + 1)
            items, requests = prompts.requests(idx, cfg.seed, _SEED_STEP, 0)
            samples = rollouts.generate(requests, p.samples, cfg.rollout.sampling).samples
            kept = [i for i, s in enumerate(samples) if s is not None]  # a prompt dropped for crashing engines
            groups = [g.outcome() for g in scorer.score([items[i] for i in kept], [requests[i] for i in kept],
                                                        [s for s in samples if s is not None])]
            store.update(groups)
            scored.append(start, [(g.uid, g.n, g.successes) for g in groups])
            bar.update(len(items), pass_rate=_mean_rate(store))
            if tags is not None:
                set_gauge("rlplat_prefilter_done", bar.done / max(len(prompts), 1), tags,
                          "share of the prefilter's prompts scored")
    scorer.stats_and_reset()  # no step line reports the pool's counters
    return store


def _write_outputs(ctx: StageContext, reference: str, prompts: PromptSet, store: PassRateStore,
                   result: PrefilterResult) -> PrefilterOutputs:
    """Table, kept uids, summary and (file datasets) the filtered dataset; each written atomically."""
    cfg, p = ctx.cfg, ctx.cfg.prefilter
    out = PrefilterOutputs.in_run(ctx.run_dir)
    write_pass_rate_table(store, out.table)
    dropped = result.dropped
    atomic_write(out.kept_uids, "".join(f"{uid}\n" for uid in prompts.uids if uid not in dropped))
    summary: dict[str, Any] = {
        **result.summary(), "prefilter/pass_rate": _mean_rate(store), "samples": p.samples,
        "drop_at_or_above": p.drop_at_or_above, "drop_zero": p.drop_zero, "reference_model": reference,
    }
    if cfg.data.source == "file":
        summary["dataset_rows"] = _write_filtered_file(cfg, result, out.dataset)
    atomic_write(out.summary, json.dumps(summary, indent=2) + "\n")
    return out


def _write_filtered_file(cfg: Config, result: PrefilterResult, path: Path) -> int:
    """The dataset file's rows minus the dropped ones, as JSONL; returns the row count.

    Row uids come from ``load_prompts`` (``id_field``, else file name and row number). Without an
    ``id_field`` the filtered copy renumbers its rows, so its uids no longer match the table: train
    on it with ``data.file.id_field`` set, or use the original file with ``data.keep_uids``.
    """
    from rlplat.data.datasets import load_prompts, read_rows

    dcfg = cfg.data.file
    uid_at = {it.index: it.uid for it in load_prompts(dcfg, tokenizer=None)}
    if dcfg.id_field is None:
        log.warning("prefilter: data.file.id_field is unset, so %s keys rows by row number; its uids "
                    "do not match the pass-rate table (see rlplat/stages/prefilter.py)", path)
    return write_filtered_dataset(read_rows(dcfg), result, path, uid_of=lambda i, _row: uid_at[i])


def _mean_rate(store: PassRateStore) -> float:
    rows = store.table_rows()
    return sum(r["successes"] for r in rows) / max(sum(r["attempts"] for r in rows), 1)
