"""The GRPO loop's batches, in-process (tests/loop/harness.py): the step line's keys, dynamic-sampling
refill, replacement draws for dropped prompts and their bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Run, prompt_items
from rewards import RewardPool
from rlplat.faults import PromptsExhausted
from rlplat.metrics import STEP_KEYS
from rlplat.runtime.timing import PhaseTimer
from rlplat.stages.grpo import _MAX_DRAWS, _REPLACEMENT_ATTEMPTS

SAMPLES = 8 * 4  # prompts_per_step x samples_per_prompt of harness.FAST


def _trained_rows(run: Run, step: int) -> int:
    """Sequences the learners trained on in ``step`` (every optimizer step, every rank)."""
    return sum(len(s.sequences) for st, _, shards in run.learners.trained if st == step for s in shards)


def test_every_step_logs_the_contract_keys_and_trains_the_whole_batch(pool: RewardPool, tmp_path: Path) -> None:
    run = Run(pool, tmp_path / "run").go()
    rows = run.metrics()
    assert run.steps() == [1, 2, 3, 4]
    for r in rows:
        assert not [k for k in STEP_KEYS if k not in r], r
        assert r["reward/samples"] == SAMPLES and r["sync/bytes"] > 0
        assert _trained_rows(run, r["step"]) == SAMPLES
    # Two optimizer steps a step (32 samples, global batch 16).
    assert [st for st, _, _ in run.learners.trained] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert [r["weights/version"] for r in rows] == [1, 2, 3, 4] and run.sync.versions == [1, 2, 3, 4]


def test_dynamic_sampling_refills_groups_without_signal(pool: RewardPool, tmp_path: Path) -> None:
    """Prompts whose samples are all alike carry no advantage: dynamic sampling draws more prompts,
    keeps the informative groups, and the curriculum observes every group scored."""
    uniform = frozenset(it.uid for it in prompt_items() if it.index % 2 == 0)
    run = Run(pool, tmp_path / "run", "curriculum.dynamic_sampling=true", "curriculum.dynamic_max_rounds=3",
              uniform=uniform).go()
    rows = run.metrics()
    assert any(r["curriculum/dynamic_extra_rounds"] > 0 for r in rows), "no step refilled: the test is idle"
    for r in rows:
        step_calls = [uids for st, uids in run.engines.calls if st == r["step"]]
        scored = sum(len(uids) for uids in step_calls)
        assert r["curriculum/dynamic_scored_groups"] == scored
        assert r["reward/samples"] == scored * 4  # the pool counted every round
        assert len(step_calls) == 1 + r["curriculum/dynamic_extra_rounds"]
        assert _trained_rows(run, r["step"]) == SAMPLES  # the batch keeps its size


def test_dropped_prompts_are_replaced_with_fresh_seeds(pool: RewardPool, tmp_path: Path) -> None:
    """A prompt dropped for crashing engines comes back as None: the loop draws replacements, with
    sampling seeds of their own, and the step still trains a whole batch."""
    crashing = frozenset(f"arith:{i}" for i in range(0, 64, 8))
    run = Run(pool, tmp_path / "run", crashing=crashing).go()
    for r in run.metrics():
        assert _trained_rows(run, r["step"]) == SAMPLES
        assert r["reward/samples"] == SAMPLES  # only generated samples are scored
    assert any(len([c for c in run.engines.calls if c[0] == s]) > 1 for s in (1, 2, 3, 4)), "nothing was replaced"
    assert len(run.engines.seeds) == len(set(run.engines.seeds)), "a replacement reused a seed"


def test_replacement_draws_are_bounded(pool: RewardPool, tmp_path: Path) -> None:
    """When every prompt is dropped, replacement draws stop after ``_MAX_DRAWS / _REPLACEMENT_ATTEMPTS``
    rounds instead of looping, and the step fails (``PromptsExhausted``) rather than train a short
    batch; the run ends with the failure checkpoint of its last finished step."""
    everything = frozenset(it.uid for it in prompt_items())
    run = Run(pool, tmp_path / "run", crashing=everything)
    with pytest.raises(PromptsExhausted, match=r"faults\.prompt_retries"):
        run.loop.generate_and_score(run.loop.curriculum.next_batch(8), 1, 0, PhaseTimer())
    assert len(run.engines.calls) == _MAX_DRAWS // _REPLACEMENT_ATTEMPTS + 1
    # A run whose prompts all crash from step 3 on (resumed after 2 good steps) stops at step 3 and
    # keeps the steps it trained.
    Run(pool, tmp_path / "late", "grpo.total_steps=2").go()
    late = Run(pool, tmp_path / "late", resume=True, crashing=everything)
    with pytest.raises(PromptsExhausted):
        late.go()
    assert late.steps() == [1, 2] and late.checkpoint_step() == 2
