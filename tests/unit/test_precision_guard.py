"""The FP8 guardrail over a run: fallback to full precision, or a stop, after k steps above the bound."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from rlplat.config.schema import Config, MismatchConfig
from rlplat.faults import FaultLog
from rlplat.runtime.precision import MismatchGuardStop, PrecisionGuard, PrecisionState, fp8_rollouts


def _cfg(**mismatch: Any) -> Config:
    cfg = Config()
    return replace(cfg, rollout=replace(cfg.rollout, precision="fp8"),
                   grpo=replace(cfg.grpo, mismatch=MismatchConfig(guard_kl=0.1, guard_steps=2, **mismatch)))


def _guard(cfg: Config) -> tuple[PrecisionGuard, Any, PrecisionState, FaultLog]:
    sync, state, log = SimpleNamespace(fp8=True, engines_fp8=True), PrecisionState(), FaultLog()
    return PrecisionGuard(cfg, sync, state, log), sync, state, log


def test_fallback_switches_the_sync_to_full_precision_after_k_steps_above(caplog: pytest.LogCaptureFixture) -> None:
    guard, sync, state, log = _guard(_cfg())
    assert guard.metrics() == {"rollout/fp8_emulated": 1.0, "faults/fp8_fallbacks": 0.0}
    for kl in (0.5, 0.05, 0.5):
        guard.after_step({"mismatch/kl": kl})
    assert sync.fp8 and state.fp8_fallbacks == 0  # never two in a row yet
    guard.after_step({"mismatch/kl": 0.2})
    assert not sync.fp8 and state.fp8_fallbacks == 1
    assert log.history[-1]["action"] == "fallback" and "guard_kl=0.1" in caplog.text
    guard.after_step({"mismatch/kl": 9.0})  # already full precision: nothing more happens
    assert state.fp8_fallbacks == 1
    assert not fp8_rollouts(_cfg(), state)  # a resumed run stays in full precision


def test_stop_raises_after_counting_it() -> None:
    guard, _, state, log = _guard(_cfg(guard_action="stop"))
    guard.after_step({"mismatch/kl": 1.0})
    with pytest.raises(MismatchGuardStop, match="mismatch/kl above"):
        guard.after_step({"mismatch/kl": 1.0})
    assert state.fp8_fallbacks == 1 and log.history[-1]["action"] == "stop"


def test_the_streak_survives_a_checkpoint() -> None:
    guard, _, state, _ = _guard(_cfg())
    guard.after_step({"mismatch/kl": 1.0})
    restored = PrecisionState.from_state(state.state())
    assert restored.kl_streak == 1 and restored == state
