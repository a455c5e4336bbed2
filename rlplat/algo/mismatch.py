"""Correction of the rollout engine / learner mismatch (pure functions).

The engine samples with its own numerics (FP8 weights, other kernels), so the probability it gave a
sampled token, ``pi_rollout``, differs from the learner's ``pi_old`` for the same weights. The PPO
ratio is then taken against the learner's own old log-probs (``grpo.old_logprobs=learner``, the
"decoupled" PPO objective) and the off-policy gap between the two is corrected with an importance
weight on each token's loss:

* ``tis``: truncated importance sampling, ``w = min(pi_old / pi_rollout, C)`` (Yao et al. 2025,
  "Your efficient RL framework secretly brings you off-policy RL training"; C = 2 by default);
* ``mis``: masked importance sampling, ``w = 1`` where the ratio lies in ``[lower, upper]`` and 0
  elsewhere (tokens out of range leave the loss; IcePop uses [0.5, 2]); with ``level="sequence"``
  a whole sequence is kept or dropped by the geometric mean of its token ratios;
* ``log``: weights of 1, statistics only; ``off``: nothing is computed.

Shapes as in ``losses.py``: ``[B, T]`` log-probs and mask. The functions take plain values (a
``MismatchRule`` is any object with the five fields below, e.g. the config's ``grpo.mismatch``);
nothing here reads the config.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import Tensor

from rlplat.algo.losses import LOG_RATIO_CLAMP, masked_mean

MismatchMode = Literal["off", "log", "tis", "mis"]
MismatchLevel = Literal["token", "sequence"]


class MismatchRule(Protocol):
    """The correction's parameters (read only).

    Attributes:
        mode: ``off``, ``log``, ``tis`` or ``mis`` (module docstring).
        tis_cap: ``C`` of ``tis``, at least 1.
        mis_lower, mis_upper: The ratio range ``mis`` keeps, ``0 <= lower < 1 < upper``.
        level: ``token`` (each token by its ratio) or ``sequence`` (by the geometric mean), for ``mis``.
    """

    @property
    def mode(self) -> MismatchMode: ...
    @property
    def tis_cap(self) -> float: ...
    @property
    def mis_lower(self) -> float: ...
    @property
    def mis_upper(self) -> float: ...
    @property
    def level(self) -> MismatchLevel: ...


def mismatch_weights(learner_lp: Tensor, rollout_lp: Tensor, mask: Tensor,
                     rule: MismatchRule) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token loss weights correcting the rollout/learner mismatch, and its statistics.

    Args:
        learner_lp: ``[B, T]`` the learner's log-probs of the sampled tokens under the weights that
            generated them (no gradient flows through them).
        rollout_lp: ``[B, T]`` the engine's log-probs of the same tokens.
        mask: ``[B, T]`` real completion tokens.
        rule: The correction (``grpo.mismatch``).

    Returns:
        ``(weights [B, T], stats)``: weights are 1 for ``log`` (0 on padding for every mode);
        stats are detached 0-d tensors ``mismatch/ratio_mean``, ``mismatch/ratio_max`` (of
        ``pi_old / pi_rollout``), ``mismatch/kl`` (k3 estimate of KL(rollout || learner) on the
        tokens the engine sampled) and ``mismatch/clipped_frac`` (share of tokens truncated or
        masked; 0 for ``log``).
    """
    m = mask.bool()
    log_ratio = torch.where(m, learner_lp.detach() - rollout_lp, torch.zeros_like(rollout_lp))
    log_ratio = log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    ones = m.to(ratio.dtype)
    if rule.mode == "tis":
        weights, cut = torch.clamp(ratio, max=rule.tis_cap) * ones, (ratio > rule.tis_cap) & m
    elif rule.mode == "mis":
        keep = _mis_keep(log_ratio, ratio, m, rule)
        weights, cut = keep.to(ratio.dtype), m & ~keep
    else:
        weights, cut = ones, torch.zeros_like(m)
    stats = {
        "mismatch/ratio_mean": masked_mean(ratio, m),
        "mismatch/ratio_max": torch.where(m, ratio, torch.zeros_like(ratio)).max(),
        # Samples come from the engine, so KL(rollout || learner) = E[log rollout - log learner];
        # k3 of the learner/rollout ratio estimates it without bias and is never negative.
        "mismatch/kl": masked_mean(torch.expm1(log_ratio) - log_ratio, m),
        "mismatch/clipped_frac": masked_mean(cut.float(), m),
    }
    return weights.detach(), {k: v.detach() for k, v in stats.items()}


def _mis_keep(log_ratio: Tensor, ratio: Tensor, m: Tensor, rule: MismatchRule) -> Tensor:
    """Tokens ``mis`` keeps: in range themselves, or (``sequence``) in a sequence whose geometric
    mean ratio is in range."""
    if rule.level == "token":
        return m & (ratio >= rule.mis_lower) & (ratio <= rule.mis_upper)
    geo = torch.exp(log_ratio.sum(-1) / m.sum(-1).clamp(min=1))
    seq_ok = (geo >= rule.mis_lower) & (geo <= rule.mis_upper)
    return m & seq_ok.unsqueeze(-1)


def guard_step(streak: int, kl: float, guard_kl: float | None, guard_steps: int) -> tuple[int, bool]:
    """The guardrail after one step with mismatch ``kl``: ``(new streak, tripped)``, tripped when
    ``kl`` exceeded ``guard_kl`` for ``guard_steps`` consecutive steps; ``guard_kl`` None: off
    (streak 0, never tripped)."""
    if guard_kl is None:
        return 0, False
    streak = streak + 1 if kl > guard_kl else 0
    return streak, streak >= guard_steps
