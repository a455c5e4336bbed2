"""Rollout precision over a run: FP8 engines, their ``rollout/fp8_emulated`` flag, and the mismatch
guardrail that switches them back to full precision (docs/fp8.md)."""

from __future__ import annotations

import logging

from rlplat.algo.mismatch import guard_step
from rlplat.config.schema import Config
from rlplat.faults import FaultLog
from rlplat.runtime.weight_sync import WeightSync

log = logging.getLogger(__name__)


class MismatchGuardStop(RuntimeError):
    """The FP8 mismatch guardrail stopped the run (``grpo.mismatch.guard_action=stop``)."""


def fp8_rollouts(cfg: Config, fault_log: FaultLog) -> bool:
    """Whether the engines get FP8 weights: ``rollout.precision=fp8`` and the guardrail has not
    switched FP8 off earlier in this run (the fault log carries that over resumes). Says so once."""
    fp8 = cfg.rollout.precision == "fp8" and fault_log.fp8_fallbacks == 0
    if fp8 and cfg.cluster.device == "gpu":
        log.warning("rollout.precision=fp8: vLLM FP8 kernels, weights sent as FP8 (a path this project's CPU "
                    "CI does not run)")
    elif fp8:
        log.warning("rollout.precision=fp8 on CPU: no FP8 kernels, so the engines compute with FP8-rounded "
                    "weights (emulated; no speed-up follows)")
    return fp8


class PrecisionGuard:
    """After each logged step, the guardrail of ``grpo.mismatch.guard_*`` over ``weight_sync``."""

    def __init__(self, cfg: Config, weight_sync: WeightSync, fault_log: FaultLog) -> None:
        self.cfg, self.weight_sync, self.fault_log = cfg, weight_sync, fault_log

    def metrics(self) -> dict[str, float]:
        """``rollout/fp8_emulated``: 1 while CPU engines generate with FP8-rounded weights."""
        return {"rollout/fp8_emulated": float(self.weight_sync.engines_fp8 and self.cfg.cluster.device == "cpu")}

    def after_step(self, train: dict[str, float]) -> None:
        """Count a step whose ``mismatch/kl`` exceeds ``guard_kl``; after ``guard_steps`` in a row,
        send full-precision weights from the next sync on (``fallback``) or raise ``MismatchGuardStop``."""
        rule = self.cfg.grpo.mismatch
        if not self.weight_sync.fp8 or "mismatch/kl" not in train:
            return
        self.fault_log.kl_streak, tripped = guard_step(self.fault_log.kl_streak, train["mismatch/kl"], rule)
        if not tripped:
            return
        what = (f"mismatch/kl above grpo.mismatch.guard_kl={rule.guard_kl} for {rule.guard_steps} consecutive "
                f"steps (now {train['mismatch/kl']:.4g})")
        self.fault_log.fp8_fallbacks += 1
        self.fault_log.record("sync", "rollout engines", what, 0.0, rule.guard_action)
        if rule.guard_action == "stop":
            raise MismatchGuardStop(f"{what}; stopped with a checkpoint (resume with rollout.precision=full, or "
                                    "a correction: grpo.mismatch.mode=tis)")
        log.warning("%s: the engines go back to full precision from the next weight sync on", what)
        self.weight_sync.fp8 = False
