"""KL estimators, the clipped policy loss and its aggregation (log-probs are in ``logprobs.py``).

Shapes: ``B`` sequences (completions), ``T`` completion tokens (right-padded), ``V`` vocabulary.
``mask`` is ``[B, T]`` (bool or 0/1) and marks real completion tokens; padding may hold any value,
including inf/NaN, because aggregation selects with ``torch.where`` instead of multiplying.

The loss is GRPO's (Shao et al. 2024) with three departures that the paper (LN §5.1) leaves open
and that the peers make configurable:
    * separate lower/upper clip ranges (DAPO "clip-higher", Yu et al. 2025); equal values give PPO;
    * the KL penalty is added to the loss with Schulman's k3 estimator (DeepSeekMath), optional;
    * the token aggregation is selectable (``aggregate``), with global normalisers so that a batch
      split over micro-batches and data-parallel ranks gives exactly the whole-batch loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from rlplat.algo.logprobs import entropy_from_logits, token_logprobs

# ``token_logprobs`` and ``entropy_from_logits`` moved to ``logprobs.py``; listing them here keeps
# ``from rlplat.algo.losses import token_logprobs`` valid (mypy --strict does not re-export
# imported names implicitly). New code should import them from ``rlplat.algo.logprobs``.
__all__ = [
    "LOG_RATIO_CLAMP",
    "AggregationMode",
    "PolicyLossStats",
    "aggregate",
    "clipped_policy_loss",
    "entropy_from_logits",
    "grpo_loss",
    "kl_k3",
    "masked_mean",
    "token_logprobs",
]

AggregationMode = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"]

# Log-ratios are clamped to +-20 before exp (veRL does the same): e^20 ~ 4.9e8 stays finite in
# fp32 and bf16, while a policy/reference pair that far apart has long left the trust region.
# Beyond the clamp the gradient is zero, which only affects tokens that are already outliers.
LOG_RATIO_CLAMP = 20.0


# --------------------------------------------------------------------------------------------
# KL and the clipped surrogate
# --------------------------------------------------------------------------------------------


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor, clamp: float = LOG_RATIO_CLAMP) -> Tensor:
    """Schulman's k3 estimator of KL(pi || ref) per sampled token.

    ``k3 = exp(ref - lp) - (ref - lp) - 1`` with tokens sampled from pi: unbiased, always >= 0,
    and lower-variance than ``lp - ref``. The log-ratio ``ref - lp`` is clamped to ``[-clamp,
    clamp]`` (see ``LOG_RATIO_CLAMP``); inside that range the value is exact.

    Args:
        logprobs: ``[B, T]`` log-probabilities of the sampled tokens under the policy.
        ref_logprobs: ``[B, T]`` the same under the reference policy.

    Returns:
        ``[B, T]`` per-token KL estimates (differentiable w.r.t. ``logprobs``).
    """
    log_ratio = (ref_logprobs - logprobs).clamp(-clamp, clamp)
    return torch.exp(log_ratio) - log_ratio - 1.0


@dataclass(frozen=True)
class PolicyLossStats:
    """Detached 0-d diagnostics of one clipped-loss call, masked means over real tokens.

    Attributes:
        clip_frac: Share of tokens where the clipped branch binds (its gradient is zero);
            equals ``clip_frac_low + clip_frac_high``.
        clip_frac_low: Share with ``A < 0`` and ``ratio < 1 - clip_low``.
        clip_frac_high: Share with ``A > 0`` and ``ratio > 1 + clip_high``.
        ratio_mean: Mean of ``pi / pi_old``.
        ratio_max: Max of ``pi / pi_old`` (0 when the mask is empty).
        approx_kl: k3 estimate of KL(pi_old || pi), the drift since the rollout.
    """

    clip_frac: Tensor
    clip_frac_low: Tensor
    clip_frac_high: Tensor
    ratio_mean: Tensor
    ratio_max: Tensor
    approx_kl: Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over positions where ``mask`` is set; 0 when nothing is set."""
    m = mask.bool()
    return torch.where(m, x, torch.zeros_like(x)).sum() / m.sum().clamp(min=1)


def _policy_stats(
    log_ratio: Tensor, ratio: Tensor, adv: Tensor, mask: Tensor, clip_low: float, clip_high: float
) -> PolicyLossStats:
    with torch.no_grad():
        m = mask.bool()
        low = (adv < 0) & (ratio < 1.0 - clip_low)
        high = (adv > 0) & (ratio > 1.0 + clip_high)
        return PolicyLossStats(
            clip_frac=masked_mean((low | high).float(), m),
            clip_frac_low=masked_mean(low.float(), m),
            clip_frac_high=masked_mean(high.float(), m),
            ratio_mean=masked_mean(ratio, m),
            # ratio > 0, so filling padding with 0 makes the max ignore it without a sync.
            ratio_max=torch.where(m, ratio, torch.zeros_like(ratio)).max(),
            approx_kl=masked_mean(torch.expm1(log_ratio) - log_ratio, m),
        )


def clipped_policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float,
    clip_high: float,
) -> tuple[Tensor, PolicyLossStats]:
    """PPO clipped surrogate with asymmetric clipping (DAPO clip-higher).

    ``ratio = exp(lp - old_lp)``;
    ``loss = -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)``.

    Args:
        logprobs: ``[B, T]`` log-probs of the sampled tokens under the policy being trained.
        old_logprobs: ``[B, T]`` log-probs under the policy that generated them (no gradient).
        advantages: ``[B]`` one advantage per sequence (broadcast over tokens), or ``[B, T]``.
        mask: ``[B, T]`` real completion tokens; only used for the statistics here.
        clip_low: Lower epsilon (ratio floor ``1 - clip_low``), e.g. 0.2.
        clip_high: Upper epsilon (ratio ceiling ``1 + clip_high``), e.g. 0.2 (PPO) or 0.28 (DAPO).

    Returns:
        ``(per_token_loss [B, T], stats)``; reduce the loss with :func:`aggregate`.
    """
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    log_ratio = (logprobs - old_logprobs.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    stats = _policy_stats(log_ratio, ratio, adv.expand_as(ratio), mask, clip_low, clip_high)
    return per_token, stats


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{name} must be > 0 when given, got {value}")


def _seq_count(mask: Tensor, num_seqs: float | None) -> Tensor | float:
    # Rows without any real token (padding rows of a micro-batch) are not sequences.
    return num_seqs if num_seqs is not None else (mask.sum(-1) > 0).sum().clamp(min=1)


def aggregate(
    per_token: Tensor,
    mask: Tensor,
    mode: AggregationMode,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    seq_len_norm: float | None = None,
) -> Tensor:
    """Reduce a ``[B, T]`` per-token loss to a scalar.

    Modes:
        ``"token_mean"``: ``sum(loss * mask) / N_tokens`` (DAPO; long answers weigh more).
        ``"seq_mean_token_mean"``: mean over sequences of each sequence's token mean (GRPO paper).
        ``"seq_mean_token_sum"``: ``sum_seq sum_tok loss / (N_seqs * seq_len_norm)``, Dr. GRPO's
            "divide by a constant": with a constant ``seq_len_norm`` no length bias is introduced.

    Data parallelism. Without normalisers, ``N_tokens`` / ``N_seqs`` are counted in this call's
    tensors, which is right only for a whole batch. When a global batch is split into micro-batches
    (and ranks), pass the *global* ``num_tokens`` (mask sum over the whole optimizer-step batch) or
    ``num_seqs``: each micro-batch then returns its share, and the shares sum exactly to the
    whole-batch loss, gradients included (``seq_mean_token_mean`` needs only ``num_seqs``, since its
    per-sequence means are local). For ``seq_mean_token_sum`` pass the config's maximum response
    length as ``seq_len_norm``; the default ``T`` changes with each micro-batch's padding. The
    driver sees the whole optimizer-step batch, so it can send these counts with each shard and no
    collective is needed to compute them.

    DeepSpeed averages gradients over data-parallel ranks (divides the all-reduced sum by
    ``world_size``) and ``engine.backward`` divides the loss by ``gradient_accumulation_steps``
    (``scale_wrt_gas=True``). To get the whole-batch gradient, call
    ``engine.backward(loss * world_size * grad_accum_steps)``, or ``loss * world_size`` with
    ``scale_wrt_gas=False``. Report the unscaled value.

    Args:
        per_token: ``[B, T]`` per-token values (loss or KL).
        mask: ``[B, T]`` real tokens (bool or 0/1).
        mode: One of the modes above.
        num_tokens: Global token count (``token_mean``).
        num_seqs: Global sequence count (both ``seq_mean_*`` modes).
        seq_len_norm: Constant length divisor (``seq_mean_token_sum``); default ``T``.

    Returns:
        0-d tensor.
    """
    if mode not in _AGGREGATORS:
        raise ValueError(f"unknown aggregation mode {mode!r}; choose one of {sorted(_AGGREGATORS)}")
    for name, value in (("num_tokens", num_tokens), ("num_seqs", num_seqs), ("seq_len_norm", seq_len_norm)):
        _check_positive(name, value)
    m = mask.bool()
    masked = torch.where(m, per_token, torch.zeros_like(per_token))
    return _AGGREGATORS[mode](masked, m, num_tokens, num_seqs, seq_len_norm)


def _token_mean(x: Tensor, m: Tensor, n_tok: float | None, n_seq: float | None, norm: float | None) -> Tensor:
    return x.sum() / (n_tok if n_tok is not None else m.sum().clamp(min=1))


def _seq_mean_token_mean(x: Tensor, m: Tensor, n_tok: float | None, n_seq: float | None, norm: float | None) -> Tensor:
    per_seq = x.sum(-1) / m.sum(-1).clamp(min=1)
    return per_seq.sum() / _seq_count(m, n_seq)


def _seq_mean_token_sum(x: Tensor, m: Tensor, n_tok: float | None, n_seq: float | None, norm: float | None) -> Tensor:
    length = norm if norm is not None else x.shape[-1]
    return x.sum() / length / _seq_count(m, n_seq)


_AGGREGATORS: dict[str, Callable[..., Tensor]] = {
    "token_mean": _token_mean,
    "seq_mean_token_mean": _seq_mean_token_mean,
    "seq_mean_token_sum": _seq_mean_token_sum,
}


# --------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    agg_mode: AggregationMode = "token_mean",
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
    logits: Tensor | None = None,
    temperature: float = 1.0,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
    seq_len_norm: float | None = None,
    token_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO loss of one (micro-)batch: clipped policy loss + ``kl_coef`` * k3 KL, aggregated.

    Both terms are reduced with the same ``agg_mode`` and normalisers (see :func:`aggregate`).
    The KL term is left out of the loss when ``ref_logprobs`` is None or ``kl_coef`` is 0; with
    ``ref_logprobs`` and ``kl_coef == 0`` the KL is still measured (stat ``kl``). Without
    ``ref_logprobs`` the stats ``kl`` and ``loss/kl`` are 0.0, so every step logs the same keys.

    Args:
        logprobs, old_logprobs, advantages, mask, clip_low, clip_high: As in
            :func:`clipped_policy_loss`.
        agg_mode, num_tokens, num_seqs, seq_len_norm: As in :func:`aggregate`.
        ref_logprobs: ``[B, T]`` reference-policy log-probs, or None.
        kl_coef: Weight of the KL penalty.
        logits: ``[B, T, V]`` raw policy logits (any float dtype, not divided by the temperature)
            aligned with ``logprobs``; only for the ``entropy`` stat, computed in chunks without
            gradient by :func:`~rlplat.algo.logprobs.entropy_from_logits`.
        temperature: Sampling temperature the ``entropy`` stat is measured at, i.e. the entropy of
            ``softmax(logits / temperature)``, the distribution the rollout sampled from; pass the
            same value as to :func:`~rlplat.algo.logprobs.token_logprobs`. Unused without ``logits``.
        token_weights: ``[B, T]`` importance weights on each token's policy loss (no gradient), the
            engine/learner mismatch correction of :func:`~rlplat.algo.mismatch.mismatch_weights`;
            None: 1. The normalisers are unchanged, so a masked token counts as a zero loss.

    Returns:
        ``(loss, stats)``. ``loss`` is a differentiable 0-d tensor. ``stats`` holds floats:
        ``loss/policy`` and ``loss/kl`` (this micro-batch's share; sum them over micro-batches),
        and ``kl``, ``clip_frac``, ``clip_frac/low``, ``clip_frac/high``, ``ratio/mean``,
        ``ratio/max``, ``approx_kl`` and (with ``logits``) ``entropy``, which are masked means
        over this micro-batch's tokens (average them over micro-batches).
    """
    norms = {"num_tokens": num_tokens, "num_seqs": num_seqs, "seq_len_norm": seq_len_norm}
    per_token, pstats = clipped_policy_loss(logprobs, old_logprobs, advantages, mask, clip_low, clip_high)
    if token_weights is not None:
        per_token = per_token * token_weights.detach()
    policy = aggregate(per_token, mask, agg_mode, **norms)
    loss = policy
    zero = policy.detach().new_zeros(())
    stats: dict[str, Tensor] = {"loss/policy": policy.detach(), "loss/kl": zero, "kl": zero}
    if ref_logprobs is not None:
        kl = kl_k3(logprobs, ref_logprobs)
        stats["kl"] = masked_mean(kl.detach(), mask)
        if kl_coef != 0.0:
            kl_term = kl_coef * aggregate(kl, mask, agg_mode, **norms)
            loss = loss + kl_term
            stats["loss/kl"] = kl_term.detach()
    stats.update(_pstats_dict(pstats))
    if logits is not None:
        stats["entropy"] = masked_mean(entropy_from_logits(logits, temperature), mask)
    return loss, _to_floats(stats)


def _pstats_dict(s: PolicyLossStats) -> dict[str, Tensor]:
    return {
        "clip_frac": s.clip_frac,
        "clip_frac/low": s.clip_frac_low,
        "clip_frac/high": s.clip_frac_high,
        "ratio/mean": s.ratio_mean,
        "ratio/max": s.ratio_max,
        "approx_kl": s.approx_kl,
    }


def _to_floats(stats: dict[str, Tensor]) -> dict[str, float]:
    # One device->host transfer for all statistics instead of one sync per .item().
    values = torch.stack([v.detach().float().reshape(()) for v in stats.values()]).tolist()
    return dict(zip(stats.keys(), values, strict=True))
