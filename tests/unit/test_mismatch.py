"""Engine/learner mismatch correction: TIS, MIS (token and sequence level), statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from rlplat.algo import grpo_loss
from rlplat.algo.mismatch import MismatchLevel, MismatchMode, MismatchRule, guard_step, mismatch_weights
from rlplat.config.schema import MismatchConfig


@dataclass(frozen=True)
class Rule:
    """Plain values: the algorithm needs no config object."""

    mode: MismatchMode
    tis_cap: float = 2.0
    mis_lower: float = 0.5
    mis_upper: float = 2.0
    level: MismatchLevel = "token"


MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
# learner / rollout ratios: [[1, 3, 0.25, pad], [1.5, 0.4, pad, pad]]
ROLLOUT = torch.log(torch.tensor([[0.5, 0.1, 0.8, 0.3], [0.4, 0.5, 0.2, 0.2]]))
LEARNER = torch.log(torch.tensor([[0.5, 0.3, 0.2, float("nan")], [0.6, 0.2, 0.9, 0.9]]))


def _ratios() -> list[float]:
    return [1.0, 3.0, 0.25, 1.5, 0.4]


def test_log_mode_weighs_every_real_token_one_and_measures_the_gap() -> None:
    w, stats = mismatch_weights(LEARNER, ROLLOUT, MASK, Rule(mode="log"))
    assert torch.equal(w, MASK.float())
    r = _ratios()
    assert stats["mismatch/ratio_mean"].item() == pytest.approx(sum(r) / 5, rel=1e-5)
    assert stats["mismatch/ratio_max"].item() == pytest.approx(3.0, rel=1e-5)
    assert stats["mismatch/kl"].item() == pytest.approx(sum(x - 1 - math.log(x) for x in r) / 5, rel=1e-5)
    assert stats["mismatch/clipped_frac"].item() == 0.0


def test_tis_truncates_at_the_cap() -> None:
    w, stats = mismatch_weights(LEARNER, ROLLOUT, MASK, Rule(mode="tis", tis_cap=2.0))
    assert torch.allclose(w, torch.tensor([[1.0, 2.0, 0.25, 0.0], [1.5, 0.4, 0.0, 0.0]]), rtol=1e-5)
    assert stats["mismatch/clipped_frac"].item() == pytest.approx(1 / 5)


def test_mis_masks_tokens_out_of_bounds() -> None:
    w, stats = mismatch_weights(LEARNER, ROLLOUT, MASK, Rule(mode="mis", mis_lower=0.5, mis_upper=2.0))
    assert torch.equal(w, torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]))
    assert stats["mismatch/clipped_frac"].item() == pytest.approx(3 / 5)


def test_sequence_level_mis_keeps_or_drops_whole_sequences_by_the_geometric_mean() -> None:
    # Geometric means: (1 * 3 * 0.25) ** (1/3) = 0.91, kept by [0.8, 1.25] although two of its
    # tokens are out of range; (1.5 * 0.4) ** 0.5 = 0.77, dropped whole.
    w, stats = mismatch_weights(LEARNER, ROLLOUT, MASK, Rule(mode="mis", mis_lower=0.8, mis_upper=1.25, level="sequence"))
    assert torch.equal(w, torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert stats["mismatch/clipped_frac"].item() == pytest.approx(2 / 5)


def test_equal_policies_have_no_mismatch() -> None:
    w, stats = mismatch_weights(ROLLOUT, ROLLOUT, MASK, Rule(mode="tis"))
    assert torch.equal(w, MASK.float())
    assert stats["mismatch/kl"].item() == 0.0 and stats["mismatch/ratio_mean"].item() == pytest.approx(1.0)


def test_token_weights_scale_each_tokens_policy_loss() -> None:
    torch.manual_seed(0)
    lp = torch.randn(2, 4, requires_grad=True)
    adv = torch.tensor([1.0, -0.5])
    weights = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.5, 1.0, 0.0, 0.0]])
    plain, _ = grpo_loss(lp, lp.detach(), adv, MASK)
    weighted, _ = grpo_loss(lp, lp.detach(), adv, MASK, token_weights=weights)
    (g_plain,) = torch.autograd.grad(plain, lp)
    (g_weighted,) = torch.autograd.grad(weighted, lp)
    assert torch.allclose(g_weighted, g_plain * weights)


def test_the_guard_trips_after_consecutive_steps_above_the_threshold_only() -> None:
    streak, tripped = 0, False
    trace = []
    for kl in (0.2, 0.05, 0.2, 0.3, 0.01):
        streak, tripped = guard_step(streak, kl, guard_kl=0.1, guard_steps=2)
        trace.append((streak, tripped))
    assert trace == [(1, False), (0, False), (1, False), (2, True), (0, False)]
    assert guard_step(5, 9.0, guard_kl=None, guard_steps=2) == (0, False)


def test_the_config_section_is_a_rule_and_corrects_alike() -> None:
    config: MismatchRule = MismatchConfig(mode="mis", mis_lower=0.8, mis_upper=1.25, level="sequence")  # mypy checks
    plain = Rule(mode="mis", mis_lower=0.8, mis_upper=1.25, level="sequence")
    (w_config, s_config), (w_plain, s_plain) = (mismatch_weights(LEARNER, ROLLOUT, MASK, r) for r in (config, plain))
    assert torch.equal(w_config, w_plain) and s_config.keys() == s_plain.keys()
    assert all(torch.equal(s_config[k], s_plain[k]) for k in s_config)
