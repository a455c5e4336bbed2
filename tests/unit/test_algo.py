"""Unit tests for rlplat.algo against hand-computed values (CPU, fast)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlplat.algo import (
    aggregate,
    clipped_policy_loss,
    entropy_from_logits,
    group_advantages,
    group_advantages_ragged,
    grpo_loss,
    kl_k3,
    register_advantage,
    token_logprobs,
)
from rlplat.algo.losses import AggregationMode

# ---------------------------------------------------------------------------------------------
# Advantages
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "rewards", "expected"),
    [
        # mean 2, unbiased std 1 (population std would be sqrt(2/3) and give +-1.2247).
        ("grpo", [[1.0, 2.0, 3.0]], [[-1.0, 0.0, 1.0]]),
        # mean 0.5, unbiased std sqrt(1/3): 0.5 / 0.57735 = 0.866025.
        ("grpo", [[1.0, 0.0, 0.0, 1.0]], [[0.866025, -0.866025, -0.866025, 0.866025]]),
        ("dr_grpo", [[1.0, 2.0, 3.0]], [[-1.0, 0.0, 1.0]]),
        ("dr_grpo", [[1.0, 0.0, 0.0, 0.0]], [[0.75, -0.25, -0.25, -0.25]]),
        # r_i minus the mean of the other samples.
        ("rloo", [[1.0, 0.0, 0.0, 0.0]], [[1.0, -1 / 3, -1 / 3, -1 / 3]]),
        ("rloo", [[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]], [[-1.5, 0.0, 1.5], [-1.5, -1.5, 3.0]]),
    ],
)
def test_group_advantages_hand_values(mode: str, rewards: list, expected: list) -> None:
    out = group_advantages(torch.tensor(rewards), mode)
    torch.testing.assert_close(out, torch.tensor(expected), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["grpo", "dr_grpo", "rloo"])
def test_constant_group_gives_zero_not_nan(mode: str) -> None:
    out = group_advantages(torch.full((3, 16), 0.7), mode)
    assert torch.equal(out, torch.zeros(3, 16))


def test_group_advantages_edge_cases() -> None:
    assert torch.equal(group_advantages(torch.tensor([[1.0]]), "grpo"), torch.zeros(1, 1))
    assert group_advantages(torch.tensor([[1, 0]]), "dr_grpo").dtype == torch.float32
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages(torch.tensor([[1.0]]), "rloo")
    with pytest.raises(ValueError, match="unknown advantage"):
        group_advantages(torch.tensor([[1.0, 0.0]]), "ppo")
    with pytest.raises(ValueError, match=r"\[G, n\]"):
        group_advantages(torch.tensor([1.0, 0.0]), "grpo")
    with pytest.raises(ValueError, match="already registered"):
        register_advantage("grpo")(lambda r, eps: r)


def test_ragged_groups() -> None:
    out = group_advantages_ragged([torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 0.0])], "dr_grpo")
    torch.testing.assert_close(out[0], torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(out[1], torch.tensor([0.5, -0.5]))


# ---------------------------------------------------------------------------------------------
# Log-probabilities, entropy, KL
# ---------------------------------------------------------------------------------------------


def test_token_logprobs_matches_naive_log_softmax() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=g, requires_grad=True)
    targets = torch.randint(0, 11, (2, 5), generator=g)
    naive = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ours = token_logprobs(logits, targets)
    torch.testing.assert_close(ours, naive)
    (g1,) = torch.autograd.grad(ours.sum(), logits)
    (g2,) = torch.autograd.grad(naive.sum(), logits)
    torch.testing.assert_close(g1, g2)


def test_token_logprobs_bf16_upcasts_to_fp32() -> None:
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(3, 4, 9, generator=g) * 5).to(torch.bfloat16)
    targets = torch.randint(0, 9, (3, 4), generator=g)
    out = token_logprobs(logits, targets)
    assert out.dtype == torch.float32
    ref = torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_entropy_of_uniform_is_log_v(dtype: torch.dtype) -> None:
    out = entropy_from_logits(torch.zeros(2, 3, 7, dtype=dtype))
    torch.testing.assert_close(out, torch.full((2, 3), math.log(7)))


def test_entropy_of_one_hot_is_zero() -> None:
    logits = torch.tensor([[[0.0, -1e4, -1e4]]])
    torch.testing.assert_close(entropy_from_logits(logits), torch.zeros(1, 1))


def test_kl_k3_values() -> None:
    lp = torch.log(torch.tensor([[0.5, 0.3]]))
    assert torch.equal(kl_k3(lp, lp), torch.zeros(1, 2))
    ref = torch.log(torch.tensor([[0.25, 0.3]]))
    # ref - lp = log 0.5: 0.5 - log(0.5) - 1 = 0.193147
    torch.testing.assert_close(kl_k3(lp, ref), torch.tensor([[0.5 + math.log(2) - 1, 0.0]]))
    huge = kl_k3(torch.tensor([[-200.0]]), torch.tensor([[0.0]]))
    assert torch.isfinite(huge).all()
    torch.testing.assert_close(huge, torch.tensor([[math.exp(20) - 21]]))


# ---------------------------------------------------------------------------------------------
# Clipped policy loss
# ---------------------------------------------------------------------------------------------


def _clip_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four sequences of one real token (+1 padding token holding garbage), clip 0.2 / 0.3."""
    ratios = torch.tensor([1.5, 0.5, 0.5, 1.5])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    old = torch.full((4, 2), -1.0)
    lp = torch.stack([old[:, 0] + ratios.log(), torch.full((4,), float("-inf"))], dim=1)
    mask = torch.tensor([[1, 0]] * 4, dtype=torch.bool)
    return lp.requires_grad_(), old, adv, mask


def test_clipped_policy_loss_each_side_and_sign() -> None:
    lp, old, adv, mask = _clip_case()
    per_token, stats = clipped_policy_loss(lp, old, adv, mask, clip_low=0.2, clip_high=0.3)
    # A>0, r=1.5: min(1.5, 1.3) -> clipped high; A>0, r=0.5: min(0.5, 0.8) -> unclipped;
    # A<0, r=0.5: min(-0.5, -0.8) -> clipped low;  A<0, r=1.5: min(-1.5, -1.3) -> unclipped.
    torch.testing.assert_close(per_token[:, 0], torch.tensor([-1.3, -0.5, 0.8, 1.5]))
    (grad,) = torch.autograd.grad(per_token[:, 0].sum(), lp)
    # d(-r*A)/d(lp) = -r*A where unclipped, 0 where the clip binds.
    torch.testing.assert_close(grad[:, 0], torch.tensor([0.0, -0.5, 0.0, 1.5]))
    assert stats.clip_frac.item() == pytest.approx(0.5)
    assert stats.clip_frac_low.item() == pytest.approx(0.25)
    assert stats.clip_frac_high.item() == pytest.approx(0.25)
    assert stats.ratio_mean.item() == pytest.approx(1.0)
    assert stats.ratio_max.item() == pytest.approx(1.5)
    # k3 of KL(old||new) = mean(r - 1 - log r) over the four real tokens.
    expected_kl = sum(r - 1 - math.log(r) for r in (1.5, 0.5, 0.5, 1.5)) / 4
    assert stats.approx_kl.item() == pytest.approx(expected_kl, rel=1e-5)


def test_clipped_policy_loss_inside_trust_region_is_plain_pg() -> None:
    lp = torch.log(torch.tensor([[1.1]]))
    per_token, stats = clipped_policy_loss(lp, torch.zeros(1, 1), torch.tensor([2.0]), torch.ones(1, 1), 0.2, 0.2)
    torch.testing.assert_close(per_token, torch.tensor([[-2.2]]))
    assert stats.clip_frac.item() == 0.0


# ---------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------

_X = torch.tensor([[1.0, 2.0, 3.0], [4.0, float("nan"), float("inf")]])
_M = torch.tensor([[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    ("mode", "kwargs", "expected"),
    [
        ("token_mean", {}, 10 / 4),
        ("token_mean", {"num_tokens": 10.0}, 1.0),
        ("seq_mean_token_mean", {}, (2 + 4) / 2),
        ("seq_mean_token_mean", {"num_seqs": 4.0}, 6 / 4),
        ("seq_mean_token_sum", {}, (6 + 4) / 3 / 2),
        ("seq_mean_token_sum", {"seq_len_norm": 5.0}, (6 + 4) / 5 / 2),
        ("seq_mean_token_sum", {"seq_len_norm": 5.0, "num_seqs": 10.0}, (6 + 4) / 5 / 10),
    ],
)
def test_aggregate_modes(mode: str, kwargs: dict, expected: float) -> None:
    # Padding holds NaN/inf on purpose: aggregation must select, not multiply by the mask.
    assert aggregate(_X, _M, mode, **kwargs).item() == pytest.approx(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"])
def test_aggregate_empty_mask_is_zero(mode: str) -> None:
    assert aggregate(torch.ones(2, 3), torch.zeros(2, 3), mode).item() == 0.0  # type: ignore[arg-type]


def test_aggregate_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_tokens"):
        aggregate(_X, _M, "token_mean", num_tokens=0.0)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(_X, _M, "sum")  # type: ignore[arg-type]


def _toy_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """8 sequences of lengths 1..6 from a linear 'model' logits = h @ W."""
    g = torch.Generator().manual_seed(seed)
    b, t, d, v = 8, 6, 4, 5
    lengths = torch.tensor([6, 1, 3, 5, 2, 6, 4, 1])
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    return {
        "h": torch.randn(b, t, d, generator=g),
        "w": torch.randn(d, v, generator=g),
        "targets": torch.randint(0, v, (b, t), generator=g),
        "old": -torch.rand(b, t, generator=g) - 1.0,
        "ref": -torch.rand(b, t, generator=g) - 1.0,
        "adv": torch.randn(b, generator=g),
        "mask": mask,
    }


def _loss(batch: dict[str, torch.Tensor], w: torch.Tensor, rows: slice, mode: AggregationMode,
          **norms: float) -> torch.Tensor:
    mask = batch["mask"][rows]
    t = int(mask.sum(-1).max())  # each micro-batch trims its own padding, as a real collator does
    lp = token_logprobs(batch["h"][rows, :t] @ w, batch["targets"][rows, :t])
    loss, _ = grpo_loss(
        lp,
        batch["old"][rows, :t],
        batch["adv"][rows],
        mask[:, :t],
        clip_low=0.2,
        clip_high=0.28,
        agg_mode=mode,
        ref_logprobs=batch["ref"][rows, :t],
        kl_coef=0.1,
        **norms,  # type: ignore[arg-type]
    )
    return loss


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"])
def test_micro_batches_with_global_normalisers_reproduce_full_batch(mode: AggregationMode) -> None:
    batch = _toy_batch()
    norms = {"num_tokens": float(batch["mask"].sum()), "num_seqs": 8.0, "seq_len_norm": 6.0}
    w_full = batch["w"].clone().requires_grad_()
    full = _loss(batch, w_full, slice(0, 8), mode, **norms)
    full.backward()

    # 2 data-parallel ranks x 2 micro-batches of 2 sequences. Emulate DeepSpeed: backward scales
    # each loss by 1/grad_accum, the all-reduce averages over ranks; the caller multiplies by both.
    world, accum = 2, 2
    rank_grads, total = [], 0.0
    for rank in range(world):
        w = batch["w"].clone().requires_grad_()
        for mb in range(accum):
            start = (rank * accum + mb) * 2
            loss = _loss(batch, w, slice(start, start + 2), mode, **norms)
            total += loss.item()
            (loss * world * accum / accum).backward()
        assert w.grad is not None
        rank_grads.append(w.grad)
    averaged = torch.stack(rank_grads).mean(0)

    assert total == pytest.approx(full.item(), rel=1e-5)
    torch.testing.assert_close(averaged, w_full.grad)


def test_micro_batches_without_global_normaliser_differ() -> None:
    """Why the normalisers exist: local token means of unequal-length micro-batches are biased."""
    batch = _toy_batch()
    w = batch["w"]
    full = _loss(batch, w, slice(0, 8), "token_mean").item()
    local = sum(_loss(batch, w, slice(s, s + 2), "token_mean").item() for s in range(0, 8, 2)) / 4
    assert abs(local - full) > 1e-3


# ---------------------------------------------------------------------------------------------
# grpo_loss composition
# ---------------------------------------------------------------------------------------------


def test_grpo_loss_composes_policy_and_kl() -> None:
    lp, old, adv, mask = _clip_case()
    lp = lp.detach().clone()
    lp[:, 1] = -1.0  # finite padding so the reference term is simple to reason about
    ref = lp.detach() + math.log(0.5)
    logits = torch.zeros(4, 2, 3)
    loss, stats = grpo_loss(
        lp, old, adv, mask, clip_low=0.2, clip_high=0.3, ref_logprobs=ref, kl_coef=0.5, logits=logits
    )
    policy = (-1.3 - 0.5 + 0.8 + 1.5) / 4
    kl = 0.5 + math.log(2) - 1
    assert loss.item() == pytest.approx(policy + 0.5 * kl, rel=1e-5)
    assert stats["loss/policy"] == pytest.approx(policy, rel=1e-5)
    assert stats["loss/kl"] == pytest.approx(0.5 * kl, rel=1e-5)
    assert stats["kl"] == pytest.approx(kl, rel=1e-5)
    assert stats["clip_frac"] == pytest.approx(0.5)
    assert stats["ratio/max"] == pytest.approx(1.5)
    assert stats["entropy"] == pytest.approx(math.log(3), rel=1e-5)
    assert all(isinstance(v, float) for v in stats.values())


def test_grpo_loss_entropy_stat_at_the_sampling_temperature() -> None:
    lp, old, adv, mask = _clip_case()
    logits = torch.empty(4, 2, 3)
    logits[:, 0] = torch.tensor([2.0, 0.0, -1.0])
    logits[:, 1] = torch.tensor([0.0, 0.0, 9.0])  # padding: would move the mean if it were counted

    def entropy(x: torch.Tensor) -> float:
        p = torch.softmax(x.double(), -1)
        return float(-(p * p.log()).sum())

    for temperature in (1.0, 0.5, 2.0):
        _, stats = grpo_loss(lp, old, adv, mask, logits=logits.to(torch.bfloat16), temperature=temperature)
        expected = entropy(logits[0, 0].to(torch.bfloat16).double() / temperature)
        assert stats["entropy"] == pytest.approx(expected, rel=1e-5)


def test_grpo_loss_without_reference_logs_zero_kl() -> None:
    lp, old, adv, mask = _clip_case()
    loss, stats = grpo_loss(lp, old, adv, mask)
    assert stats["kl"] == 0.0 and stats["loss/kl"] == 0.0
    assert "entropy" not in stats
    loss.backward()
    assert lp.grad is not None and torch.isfinite(lp.grad).all()  # padding held -inf log-probs


# ---------------------------------------------------------------------------------------------
# Import hygiene (batching bookkeeping is tested in test_batching.py)
# ---------------------------------------------------------------------------------------------


def test_algo_imports_no_heavy_frameworks() -> None:
    code = (
        "import sys, rlplat.algo; "
        "bad = [m for m in ('ray', 'vllm', 'deepspeed') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
