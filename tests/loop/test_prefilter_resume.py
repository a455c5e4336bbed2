"""The prefilter's own loop (``rlplat.stages.prefilter.sample_and_score``) over the harness's fakes:
an interrupted prefilter continues after the last generation call it logged, writes the table an
uninterrupted run writes, and does not sample the logged calls again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curricula import PassRateStore
from harness import Crash, Run, Script, prompt_items, prompt_set
from rewards import RewardPool
from rlplat.stages.prefilter import ScoredLog, sample_and_score

# 64 prompts in calls of 16: four calls.
SETTINGS = ("prefilter.samples=4", "prefilter.prompts_per_call=16")


def _prefilter(pool: RewardPool, run_dir: Path, resume: bool = False, script: Script | None = None,
               config_hash: str = "h") -> tuple[Run, PassRateStore]:
    """The prefilter's sampling over the fakes of a harness ``Run`` (its engines and reward pool)."""
    run = Run(pool, run_dir, *SETTINGS, script=script)
    with ScoredLog.open(run_dir / "scored.jsonl", config_hash, resume) as scored:
        return run, sample_and_score(run.cfg, run.engines, run.loop.scorer, prompt_set(prompt_items()), scored,
                                     run.records.faults)


def _rows(store: PassRateStore) -> list[dict[str, object]]:
    return sorted(store.table_rows(), key=lambda r: str(r["uid"]))


def test_an_interrupted_prefilter_continues_after_its_logged_calls(pool: RewardPool, tmp_path: Path) -> None:
    _, reference = _prefilter(pool, tmp_path / "reference")
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):  # lost as its third call starts
        _prefilter(pool, run_dir, script=Script({("generate", 3): Crash()}))
    logged = (run_dir / "scored.jsonl").read_text().splitlines()
    assert [json.loads(line)["start"] for line in logged[1:]] == [0, 16]
    again, store = _prefilter(pool, run_dir, resume=True)
    assert _rows(store) == _rows(reference) and len(_rows(store)) == 64
    # Only calls 3 and 4 were sampled again.
    assert [step for step, _ in again.engines.calls] == [3, 4]


def test_a_changed_config_starts_the_log_over(pool: RewardPool, tmp_path: Path) -> None:
    with pytest.raises(Crash):
        _prefilter(pool, tmp_path, script=Script({("generate", 2): Crash()}))
    again, _ = _prefilter(pool, tmp_path, resume=True, config_hash="other")
    assert [step for step, _ in again.engines.calls] == [1, 2, 3, 4]
