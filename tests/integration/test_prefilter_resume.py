"""An interrupted prefilter continues after the last generation call it logged: SIGKILLed (driver,
Ray and every actor) as its third call starts, resumed, it writes the table an uninterrupted run
writes, and it did not sample the logged calls again."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from launch_helpers import launch, plugin_env, resume

pytestmark = pytest.mark.slow
RUN = ["stages=[prefilter]", "prefilter.samples=4", "prefilter.prompts_per_call=16",
       "reward.components={coin_flip: 1.0}", "reward.modules=[coin_rewards]"]


def _table(run_dir: Path) -> list[dict[str, object]]:
    lines = (run_dir / "prefilter" / "pass_rates.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda r: str(r["uid"]))


def test_killed_prefilter_resumes_after_its_logged_calls(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    rc, out = launch(reference, *RUN, env=plugin_env())
    assert rc == 0, out[-3000:]
    run = tmp_path / "run"
    rc, out = launch(run, *RUN, "faults.inject=[driver:kill@generate:3]", env=plugin_env())
    assert rc == -signal.SIGKILL, out[-3000:]
    logged = (run / "prefilter" / "scored.jsonl").read_text().splitlines()
    assert [json.loads(line)["start"] for line in logged[1:]] == [0, 16]  # calls 1 and 2, then the kill
    rc, out = resume(run, "faults.inject=[]", env=plugin_env())
    assert rc == 0, out[-3000:]
    assert "prefilter: continuing after 2 logged calls" in out
    assert _table(run) == _table(reference) and len(_table(run)) > 32
    # The resumed stage started at the third call: its first progress line counts 32 + 16 prompts.
    after = out.split("prefilter: continuing after", 1)[1]
    first = next(line for line in after.splitlines() if line.startswith("[prefilter] prompt "))
    assert first.startswith("[prefilter] prompt 48/"), first
