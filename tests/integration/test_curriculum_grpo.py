"""Curriculum through ``python -m rlplat.launch``: prefilter stage, progressive batching, dynamic
sampling, held-out evaluation, and resume of the curriculum state.

The run is the pipeline ``prefilter -> grpo`` that the monitoring tests read too (the session's
``monitored_run``, tests/integration/conftest.py); its GRPO stage must pick up the prefilter's table
and kept uids by itself. That a checkpoint restores the curriculum's state, so that a resumed run
reproduces the uninterrupted one, is tested in-process (tests/loop/test_loop_recovery.py, with the
progressive curriculum and dynamic sampling).

To stay within a few minutes there is no warm start: the model is the randomly initialised tiny
Llama, and the ``coin_flip`` test reward (``plugins/coin_rewards.py``) accepts about half of its
samples at random, which spreads the prompts over every pass rate as a real task would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from curricula import read_jsonl
from curricula.tracking import uids_digest
from rlplat.checkpoint import latest_checkpoint, load_run_state
from rlplat.metrics import STEP_KEYS, read_metrics

pytestmark = pytest.mark.slow
CURRICULUM_KEYS = ("curriculum/target_center", "curriculum/target_mean_pass_rate", "curriculum/batch_prior_pass_rate",
                   "curriculum/batch_unknown_frac", "curriculum/dynamic_dropped_frac", "curriculum/retired",
                   "curriculum/epoch", "curriculum/epoch_remaining")


@pytest.fixture(scope="module")
def pipeline_run(monitored_run: tuple[Path, float, float, str]) -> Path:
    """The session's monitored run (tests/integration/conftest.py, ``MONITORED``): 64 RL prompts, 8
    held out for evaluation, 56 prefiltered with 4 samples each (drop 3 or 4 of 4), then GRPO with
    a progressive curriculum and dynamic sampling."""
    return monitored_run[0]


def _curriculum_state(run_dir: Path) -> dict[str, Any]:
    found = latest_checkpoint(run_dir)
    assert found is not None
    return load_run_state(found[1]).curriculum


def test_prefilter_writes_its_table_and_grpo_trains_on_the_kept_prompts(pipeline_run: Path) -> None:
    out = pipeline_run / "prefilter"
    table = read_jsonl(out / "pass_rates.jsonl")
    kept = (out / "kept_uids.txt").read_text().split()
    assert len(table) == 56 and all(row["attempts"] == 4 for row in table)  # held-out prompts never sampled
    easy = {row["uid"] for row in table if row["successes"] >= 3}
    assert easy and set(kept) == {row["uid"] for row in table} - easy
    tracker = _curriculum_state(pipeline_run)["tracker"]
    assert tracker["num_prompts"] == len(kept) and tracker["uids_digest"] == uids_digest(kept)
    # The prefilter changes no weights: it hands its input model on to GRPO.
    manifest = json.loads((pipeline_run / "stages" / "prefilter" / "manifest.json").read_text())
    assert manifest["model_path"] == manifest["input_model"] == str(pipeline_run / "initial_model")


def test_every_step_line_carries_the_curriculum_metrics(pipeline_run: Path) -> None:
    rows = read_metrics(pipeline_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        missing = [k for k in (*STEP_KEYS, *CURRICULUM_KEYS) if k not in r]
        assert not missing, f"step {r['step']} lacks {missing}"
        hist = {k: v for k, v in r.items() if k.startswith("curriculum/hist/")}
        assert len(hist) == 9 and sum(hist.values()) + r["curriculum/batch_unknown_frac"] == pytest.approx(1.0)
        assert r["curriculum/batch_unknown_frac"] == 0.0  # the table gives every prompt a rate
        assert 0.0 <= r["curriculum/batch_prior_pass_rate"] <= 0.5  # the prefilter left 0, 1/4 and 2/4
        assert 0.0 <= r["curriculum/dynamic_dropped_frac"] <= 1.0
        # The pool's counters cover every group scored in the step, refill rounds included.
        assert r["reward/samples"] == r["curriculum/dynamic_scored_groups"] * 4
    assert any(r["curriculum/dynamic_extra_rounds"] > 0 for r in rows), "no step refilled: the check above is idle"
    # The target moves from easy to hard over the run.
    assert rows[0]["curriculum/target_center"] > rows[-1]["curriculum/target_center"]
    # Held-out evaluation at steps 2 and 4 only.
    assert [("eval/pass_rate" in r) for r in rows] == [False, True, False, True]


def test_grpo_trains_packed_rows_and_measures_the_toggle_in_both_modes(pipeline_run: Path) -> None:
    """``learner.pack_tokens`` and a token budget per micro-batch; ``grpo.toggle_eval`` at the end."""
    rows = read_metrics(pipeline_run / "metrics.jsonl")
    assert all(0.5 < r["positions/real_share"] <= 1.0 for r in rows)
    manifest = json.loads((pipeline_run / "stages" / "grpo" / "manifest.json").read_text())
    for key in ("toggle/on_compliance", "toggle/off_compliance", "toggle/on_pass_rate", "toggle/off_pass_rate"):
        assert 0.0 <= manifest["metrics"][key] <= 1.0, key
