"""The SFT stage on the real DeepSpeed learners: the shipped toggle file, packed rows, a complete
Hugging Face directory for the next stage, toggle compliance measured by the real vLLM engines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launch_helpers import launch

pytestmark = pytest.mark.slow
DATA = Path(__file__).resolve().parents[1] / "data" / "sft_toggle.jsonl"


def test_sft_stage_trains_packed_rows_and_writes_a_loadable_model(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rc, out = launch(run, "stages=[sft]", f"sft.data={DATA}", "sft.steps=150", "sft.batch_size=16",
                     "sft.pack_tokens=96", "sft.eval_rows=8", "cluster.dashboard=false", fast=False)
    assert rc == 0, out[-3000:]
    manifest = json.loads((run / "stages" / "sft" / "manifest.json").read_text())
    model = Path(manifest["model_path"])
    assert model == run / "sft_model" and manifest["metrics"]["sft/loss_last"] < manifest["metrics"]["sft/loss_first"]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)  # the directory is complete: a next stage's model.path
    assert AutoModelForCausalLM.from_pretrained(model).config.vocab_size == len(tokenizer)
    # Toggle compliance on the 8 held-out rows (4 unseen prompts, both modes), greedy answers of
    # vLLM engines: 150 steps teach the tiny model to think when told "on" and not when told "off"
    # (1.0 and 1.0 when measured; the bound leaves one miss in each mode).
    assert manifest["metrics"]["toggle/on_compliance"] >= 0.75
    assert manifest["metrics"]["toggle/off_compliance"] >= 0.75
