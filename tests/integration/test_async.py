"""Asynchronous GRPO end to end (``grpo.async.max_staleness=2``; Ray + vLLM (CPU) + DeepSpeed).

One engine and one learner rank in separate bundles; the engine generates step k + 1 while the
learner trains step k, and syncs are skipped while the next samples would lag by at most 2
versions. Checkpoints (every 2 steps) and the last step sync out of turn, so over 4 steps the
engines hold versions 0, 2, 2, 4 and the samples trained lag by 0, 1, 2, 1. TIS with the learner's
old log-probs makes every lagging step recompute them. The lookahead's bookkeeping (staleness,
skipped syncs, resuming from the batch in flight, evaluation between batches) is tested in-process
in tests/loop/test_loop_async.py; this run proves it on the real engines and learners.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from launch_helpers import launch
from rlplat.metrics import read_metrics

pytestmark = pytest.mark.slow

ASYNC = ["stages=[grpo]", "grpo.async.max_staleness=2", "cluster.colocate=false", "cluster.rollout_devices=1",
         "grpo.mismatch.mode=tis", "grpo.old_logprobs=learner"]


@pytest.fixture(scope="module")
def warm(reference_run: Path) -> str:
    """GRPO starts from the reference run's warm-started model (one warm start for the session)."""
    return f"model.path={reference_run / 'warmstart_model'}"


@pytest.fixture(scope="module")
def async_run(warm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("async") / "run"
    rc, out = launch(run_dir, warm, *ASYNC)
    assert rc == 0, out[-3000:]
    return run_dir


def test_samples_lag_by_at_most_max_staleness_and_syncs_are_skipped(async_run: Path) -> None:
    rows = read_metrics(async_run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["weights/version"] for r in rows] == [1, 2, 3, 4]
    assert [r["weights/engine_version"] for r in rows] == [0, 2, 2, 4]
    assert [r["weights/staleness"] for r in rows] == [0, 1, 2, 1]
    assert [r["sync/bytes"] > 0 for r in rows] == [False, True, False, True]
    for r in rows:
        # Every step is corrected towards the learner's own log-probs, lagging or not.
        assert r["mismatch/ratio_mean"] > 0 and 0 <= r["mismatch/clipped_frac"] <= 1
        assert r["time/rollout_wait_s"] >= 0 and r["tokens/generated"] > 0
        # The engines' own time is most of the rollout's; the rest is Ray calls and moving samples.
        assert 0 < r["time/rollout/engine_s"] <= r["time/rollout_s"]
        parts = r["time/train/forward_backward_s"] + r["time/train/optimizer_s"] + r["time/train/other_s"]
        assert r["time/train/forward_backward_s"] > 0 and parts == pytest.approx(r["time/train_s"])

