"""The pure parts of the prefilter stage and of GRPO's prompt selection (no Ray, no engines)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rlplat.config.errors import ConfigError
from rlplat.config.loader import load
from rlplat.config.validate import validate
from rlplat.preflight import preflight
from rlplat.runtime.prompts import keep_listed, split_held_out
from rlplat.stages.base import KEPT_UIDS, PASS_RATE_TABLE, StageContext, StageManifest, read_manifest, write_manifest
from rlplat.stages.prefilter import PrefilterOutputs
from rlplat.types import PromptItem


def _items(n: int) -> list[PromptItem]:
    return [PromptItem(uid=f"q{i}", index=i, question=str(i), text=str(i), reference=str(i)) for i in range(n)]


def test_held_out_split_is_disjoint_seeded_and_keeps_dataset_order() -> None:
    items = _items(50)
    train, held_out = split_held_out(items, 10, seed=3)
    assert len(train) == 40 and len(held_out) == 10
    assert not {it.uid for it in train} & {it.uid for it in held_out}
    assert [it.index for it in held_out] == sorted(it.index for it in held_out)
    assert [it.index for it in train] == sorted(it.index for it in train)
    assert split_held_out(items, 10, seed=3) == (train, held_out)  # same seed, same prompts
    assert split_held_out(items, 10, seed=4)[1] != held_out
    assert split_held_out(items, 0, seed=3) == (items, [])


def test_holding_out_every_prompt_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("grpo.eval_prompts")):
        split_held_out(_items(5), 5, seed=0)


def test_keep_listed_drops_unlisted_prompts(tmp_path: Path) -> None:
    listing = tmp_path / "kept_uids.txt"
    listing.write_text("q1\n\n q3 \nnot-a-prompt\n")
    assert [it.uid for it in keep_listed(_items(5), str(listing))] == ["q1", "q3"]
    assert len(keep_listed(_items(5), None)) == 5
    listing.write_text("elsewhere\n")
    with pytest.raises(ConfigError, match=re.escape("data.keep_uids")):
        keep_listed(_items(5), str(listing))


def test_a_stage_finds_the_newest_upstream_artifact_and_manifests_round_trip(tmp_path: Path) -> None:
    cfg, _ = load([f"hydra.run.dir={tmp_path}"])
    first = StageManifest("prefilter", "m", "m", {PASS_RATE_TABLE: "old.jsonl", KEPT_UIDS: "kept.txt"})
    second = StageManifest("prefilter2", "m", "m", {PASS_RATE_TABLE: "new.jsonl"})
    assert StageContext(cfg, tmp_path, "m", False).artifact(KEPT_UIDS) is None
    ctx = StageContext(cfg, tmp_path, "m", False, (first, second))
    assert (ctx.artifact(PASS_RATE_TABLE), ctx.artifact(KEPT_UIDS)) == ("new.jsonl", "kept.txt")
    write_manifest(tmp_path, "prefilter", first)
    assert read_manifest(tmp_path, "prefilter") == first and read_manifest(tmp_path, "grpo") is None


@pytest.mark.parametrize("overrides, field", [
    (["stages=[warmstart,grpo,prefilter]"], "stages"),
    (["stages=[prefilter,grpo]", "prefilter.samples=0"], "prefilter.samples"),
    (["grpo.eval_every=5"], "grpo.eval_every"),
    (["grpo.eval_every=5", "grpo.eval_prompts=64", "grpo.eval_samples=0"], "grpo.eval_samples"),
])
def test_bad_prefilter_or_eval_config_is_caught_by_validation(overrides: list[str], field: str) -> None:
    cfg, _ = load(overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.field == field


@pytest.mark.parametrize("overrides, field", [
    (["stages=[prefilter,grpo]", "prefilter.model_path=/nonexistent/ref"], "prefilter.model_path"),
    (["data.keep_uids=/nonexistent/kept_uids.txt"], "data.keep_uids"),
])
def test_missing_prefilter_files_are_caught_by_preflight(overrides: list[str], field: str) -> None:
    cfg, _ = load(overrides)
    validate(cfg)
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    assert err.value.field == field


def test_prefilter_pipeline_config_validates() -> None:
    cfg, _ = load(["stages=[warmstart,prefilter,grpo]", "grpo.eval_every=5", "grpo.eval_prompts=64"])
    validate(cfg)
    preflight(cfg)
    assert cfg.prefilter.samples == 8 and cfg.prefilter.drop_at_or_above == 0.75 and not cfg.prefilter.drop_zero


def test_outputs_of_a_file_dataset_prefilter(tmp_path: Path) -> None:
    from curricula import PassRateStore, prefilter, read_jsonl
    from rlplat.data.datasets import load_prompts
    from rlplat.runtime.prompts import tokenize
    from rlplat.stages.prefilter import _write_outputs

    class _Chars:  # a tokenizer: one id per character
        def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
            return {"input_ids": [ord(c) for c in text]}

    gsm8k = Path(__file__).resolve().parents[1] / "data" / "gsm8k_small.jsonl"
    cfg, _ = load(["data.source=file", f"data.file.path={gsm8k}", "data.file.answer_format=gsm8k"])
    items = load_prompts(cfg.data.file)
    store = PassRateStore()
    for item, solved in zip(items, (8, 2, 0)):  # the first prompt is too easy
        store.add(item.uid, 8, solved)
    out = _write_outputs(StageContext(cfg, tmp_path, "model", False), "ref", tokenize(items, _Chars(), 10**6),
                         store, prefilter(store))
    assert out == PrefilterOutputs.in_run(tmp_path)
    assert out.kept_uids.read_text().split() == [items[1].uid, items[2].uid]
    assert [row["uid"] for row in read_jsonl(out.table)] == [it.uid for it in items]
    assert [row["question"] for row in read_jsonl(out.dataset)] == [items[1].question, items[2].question]
    summary = json.loads(out.summary.read_text())
    assert summary["prefilter/kept"] == 2 and summary["dataset_rows"] == 2 and summary["reference_model"] == "ref"


def test_scored_log_continues_only_an_interrupted_stage_under_the_same_hash(tmp_path: Path) -> None:
    from rlplat.stages.prefilter import ScoredLog

    path = tmp_path / "prefilter" / "scored.jsonl"
    with ScoredLog.open(path, "h1", resume=False) as log:
        log.append(0, [("a", 8, 3), ("b", 8, 8)])
        log.append(2, [("c", 8, 0)])
    with open(path, "a") as f:
        f.write('{"start": 4, "groups": [["d", 8')  # the line a crash cut short
    with ScoredLog.open(path, "h1", resume=True) as log:
        assert log.calls == {0: [("a", 8, 3), ("b", 8, 8)], 2: [("c", 8, 0)]}
        assert log.store().latest_pass_rate("a") == 3 / 8 and len(log.store()) == 3
        log.append(4, [("d", 8, 1)])
    with ScoredLog.open(path, "h1", resume=True) as log:
        assert sorted(log.calls) == [0, 2, 4]  # the cut line is gone, the new call kept
    for hash_, resume in (("h2", True), ("h1", False)):  # another config, or a new run: start over
        with ScoredLog.open(path, hash_, resume=resume) as log:
            assert log.calls == {}
        assert json.loads(path.read_text().splitlines()[0]) == {"config_hash": hash_}
