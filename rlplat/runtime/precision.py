"""Rollout precision over a run: FP8 engines, their ``rollout/fp8_emulated`` flag, and the mismatch
guardrail that switches them back to full precision (docs/fp8.md).

The guardrail's state (``PrecisionState``) is checkpointed with the run, so a resumed run keeps
its streak and, once it fell back, stays in full precision.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from rlplat.algo.mismatch import guard_step
from rlplat.config.schema import Config
from rlplat.faults import FaultLog
from rlplat.runtime.protocols import Publisher

log = logging.getLogger(__name__)


class MismatchGuardStop(RuntimeError):
    """The FP8 mismatch guardrail stopped the run (``grpo.mismatch.guard_action=stop``)."""


@dataclass
class PrecisionState:
    """The guardrail's record over a run.

    Attributes:
        fp8_fallbacks: Times the guardrail switched FP8 engines back to full precision.
        kl_streak: Consecutive steps with ``mismatch/kl`` above ``grpo.mismatch.guard_kl``.
    """

    fp8_fallbacks: int = 0
    kl_streak: int = 0

    def state(self) -> dict[str, int]:
        """JSON-serialisable state (what a checkpoint holds)."""
        return {"fp8_fallbacks": self.fp8_fallbacks, "kl_streak": self.kl_streak}

    @classmethod
    def from_state(cls, state: Mapping[str, int]) -> PrecisionState:
        """Inverse of ``state`` (an empty mapping: a new run)."""
        return cls(int(state.get("fp8_fallbacks", 0)), int(state.get("kl_streak", 0)))


def fp8_rollouts(cfg: Config, precision: PrecisionState) -> bool:
    """Whether the engines get FP8 weights: ``rollout.precision=fp8`` and the guardrail has not
    switched FP8 off earlier in this run. Says so once."""
    fp8 = cfg.rollout.precision == "fp8" and precision.fp8_fallbacks == 0
    if fp8 and cfg.cluster.device == "gpu":
        log.warning("rollout.precision=fp8: vLLM quantizes the 16-bit weights it is sent to FP8 (weights "
                    "crossing nodes travel as FP8 with one scale per fused group); a path this project's CPU "
                    "CI does not run (docs/gpu.md)")
    elif fp8:
        log.warning("rollout.precision=fp8 on CPU: no FP8 kernels, so the engines compute with FP8-rounded "
                    "weights (emulated; no speed-up follows)")
    return fp8


class PrecisionGuard:
    """After each logged step, the guardrail of ``grpo.mismatch.guard_*`` over ``weight_sync``;
    events go to the run's ``fault_log``."""

    def __init__(self, cfg: Config, weight_sync: Publisher, state: PrecisionState, fault_log: FaultLog) -> None:
        self.cfg, self.weight_sync, self.state, self.fault_log = cfg, weight_sync, state, fault_log

    def metrics(self) -> dict[str, float]:
        """``rollout/fp8_emulated``: 1 while CPU engines generate with FP8-rounded weights;
        ``faults/fp8_fallbacks``: the run's fallbacks so far."""
        return {"rollout/fp8_emulated": float(self.weight_sync.engines_fp8 and self.cfg.cluster.device == "cpu"),
                "faults/fp8_fallbacks": float(self.state.fp8_fallbacks)}

    def after_step(self, train: dict[str, float]) -> None:
        """Count a step whose ``mismatch/kl`` exceeds ``guard_kl``; after ``guard_steps`` in a row,
        send full-precision weights from the next sync on (``fallback``) or raise ``MismatchGuardStop``."""
        rule = self.cfg.grpo.mismatch
        if not self.weight_sync.fp8 or "mismatch/kl" not in train:
            return
        self.state.kl_streak, tripped = guard_step(self.state.kl_streak, train["mismatch/kl"], rule.guard_kl,
                                                   rule.guard_steps)
        if not tripped:
            return
        what = (f"mismatch/kl above grpo.mismatch.guard_kl={rule.guard_kl} for {rule.guard_steps} consecutive "
                f"steps (now {train['mismatch/kl']:.4g})")
        self.state.fp8_fallbacks += 1
        self.fault_log.record("sync", "rollout engines", what, 0.0, rule.guard_action)
        if rule.guard_action == "stop":
            raise MismatchGuardStop(f"{what}; stopped with a checkpoint (resume with rollout.precision=full, or "
                                    "a correction: grpo.mismatch.mode=tis)")
        log.warning("%s: the engines go back to full precision from the next weight sync on", what)
        self.weight_sync.fp8 = False
