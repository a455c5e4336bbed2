"""The pure parts of the prefilter stage and of GRPO's prompt selection (no Ray, no engines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlplat.config.errors import ConfigError
from rlplat.config.loader import load
from rlplat.config.validate import validate
from rlplat.stages.context import write_manifest
from rlplat.stages.prefilter import CurriculumInputs, PrefilterOutputs, curriculum_inputs
from rlplat.stages.prompts import keep_listed, split_held_out
from rlplat.types import PromptItem


def _items(n: int) -> list[PromptItem]:
    return [PromptItem(uid=f"q{i}", index=i, question=str(i), text=str(i), reference=str(i)) for i in range(n)]


def test_held_out_split_is_disjoint_seeded_and_keeps_dataset_order() -> None:
    items = _items(50)
    split = split_held_out(items, 10, seed=3)
    assert len(split.train) == 40 and len(split.held_out) == 10
    assert not {it.uid for it in split.train} & {it.uid for it in split.held_out}
    assert [it.index for it in split.held_out] == sorted(it.index for it in split.held_out)
    assert split_held_out(items, 10, seed=3) == split  # same seed, same prompts
    assert split_held_out(items, 10, seed=4).held_out != split.held_out
    assert split_held_out(items, 0, seed=3).train == tuple(items)


def test_holding_out_every_prompt_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="grpo.eval_prompts"):
        split_held_out(_items(5), 5, seed=0)


def test_keep_listed_drops_unlisted_prompts(tmp_path: Path) -> None:
    listing = tmp_path / "kept_uids.txt"
    listing.write_text("q1\n\n q3 \nnot-a-prompt\n")
    assert [it.uid for it in keep_listed(_items(5), str(listing))] == ["q1", "q3"]
    assert len(keep_listed(_items(5), None)) == 5
    listing.write_text("elsewhere\n")
    with pytest.raises(ConfigError, match="data.keep_uids"):
        keep_listed(_items(5), str(listing))


def test_grpo_uses_a_finished_prefilter_unless_the_config_names_files(tmp_path: Path) -> None:
    cfg, _ = load([f"hydra.run.dir={tmp_path}"])
    assert curriculum_inputs(cfg, tmp_path) == CurriculumInputs(keep_uids=None, pass_rate_table=None)
    write_manifest(tmp_path, "prefilter", {"model_path": "m", "input_model": "m"})
    out = PrefilterOutputs.in_run(tmp_path)
    auto = curriculum_inputs(cfg, tmp_path)
    assert (auto.keep_uids, auto.pass_rate_table) == (str(out.kept_uids), str(out.table))
    explicit, _ = load([f"hydra.run.dir={tmp_path}", "data.keep_uids=mine.txt", "curriculum.pass_rate_table=t.jsonl"])
    got = curriculum_inputs(explicit, tmp_path)
    assert (got.keep_uids, got.pass_rate_table) == ("mine.txt", "t.jsonl")


@pytest.mark.parametrize("overrides, field", [
    (["stages=[warmstart,grpo,prefilter]"], "stages"),
    (["stages=[prefilter,grpo]", "prefilter.samples=0"], "prefilter.samples"),
    (["stages=[prefilter,grpo]", "prefilter.model_path=/nonexistent/ref"], "prefilter.model_path"),
    (["grpo.eval_every=5"], "grpo.eval_every"),
    (["grpo.eval_every=5", "grpo.eval_prompts=64", "grpo.eval_samples=0"], "grpo.eval_samples"),
    (["data.keep_uids=/nonexistent/kept_uids.txt"], "data.keep_uids"),
])
def test_bad_prefilter_or_eval_config_is_caught_before_ray(overrides: list[str], field: str) -> None:
    cfg, _ = load(overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.field == field


def test_prefilter_pipeline_config_validates() -> None:
    cfg, _ = load(["stages=[warmstart,prefilter,grpo]", "grpo.eval_every=5", "grpo.eval_prompts=64"])
    validate(cfg)
    assert cfg.prefilter.samples == 8 and cfg.prefilter.drop_at_or_above == 0.75 and not cfg.prefilter.drop_zero


def test_outputs_of_a_file_dataset_prefilter(tmp_path: Path) -> None:
    from curricula import PassRateStore, prefilter, read_jsonl
    from rlplat.data.datasets import load_prompts
    from rlplat.stages.context import StageContext
    from rlplat.stages.prefilter import _write_outputs
    from rlplat.stages.prompts import dataset_config

    gsm8k = Path(__file__).resolve().parents[1] / "data" / "gsm8k_small.jsonl"
    cfg, _ = load(["data.source=file", f"data.file.path={gsm8k}", "data.file.answer_format=gsm8k"])
    items = load_prompts(dataset_config(cfg))
    store = PassRateStore()
    for item, solved in zip(items, (8, 2, 0)):  # the first prompt is too easy
        store.add(item.uid, 8, solved)
    _write_outputs(StageContext(cfg, tmp_path, "model", False), "ref", items, store, prefilter(store))
    out = PrefilterOutputs.in_run(tmp_path)
    assert out.kept_uids.read_text().split() == [items[1].uid, items[2].uid]
    assert [row["uid"] for row in read_jsonl(out.table)] == [it.uid for it in items]
    assert [row["question"] for row in read_jsonl(out.dataset)] == [items[1].question, items[2].question]
    summary = json.loads(out.summary.read_text())
    assert summary["prefilter/kept"] == 2 and summary["dataset_rows"] == 2 and summary["reference_model"] == "ref"
