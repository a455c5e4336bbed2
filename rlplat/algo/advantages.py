"""Group-relative advantage estimators (GRPO, Dr. GRPO, RLOO).

Every estimator maps the rewards of the ``n`` samples drawn for one prompt to one advantage per
sample; the advantage is then broadcast over the sample's completion tokens by the loss. The
estimators are pure tensor functions so that they can be unit-tested on CPU and run on the driver.

Advantages are computed over the *whole* group before a rollout is split into optimizer steps:
the paper draws 72 prompts x 16 samples = 1152 samples and takes 2 optimizer steps of 576 each
(LN §5.1), and a group's baseline must not depend on which step its samples land in.

Estimators (``mode``):
    ``"grpo"``: ``(r - mean) / (std + eps)`` with the *unbiased* (n - 1) standard deviation, as in
        DeepSeekMath's reference code and TRL (``torch.std`` default). Population std would give
        advantages larger by ``sqrt(n / (n - 1))``; with n = 16 that is 3 %.
    ``"dr_grpo"``: ``r - mean``. Dr. GRPO (Liu et al. 2025) drops the std division because it
        up-weights groups whose rewards barely differ (too easy or too hard prompts).
    ``"rloo"``: ``r_i - mean_{j != i} r_j``, the leave-one-out baseline (Ahmadian et al. 2024), used
        by NeMo-Aligner/NeMo-RL's GRPO (``use_leave_one_out_baseline``). It equals
        ``n / (n - 1) * (r_i - mean)``. Needs n >= 2.

A group whose rewards are all equal gets advantage exactly 0 in every mode (never NaN): it carries
no learning signal.

Your own estimator is a function ``fn(rewards[G, n], eps) -> advantages[G, n]``, registered with
``@register_advantage("name")`` or named by its import path in ``grpo.advantage`` (``ADVANTAGES``
is an ``rlbase.Registry``, the mechanism every pluggable component uses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from rlbase import Registry

AdvantageMode = Literal["grpo", "dr_grpo", "rloo"]
Estimator = Callable[[Tensor, float], Tensor]
ADVANTAGES = Registry("advantage estimator")


def register_advantage(name: str) -> Callable[[Estimator], Estimator]:
    """Register an estimator ``fn(rewards[G, n], eps) -> advantages[G, n]`` under ``name``.

    Raises:
        rlbase.PluginError: if ``name`` is taken by another function (a silent override would
            change training).
    """
    return ADVANTAGES.register(name)


def advantage_modes() -> tuple[str, ...]:
    """Names of the registered estimators."""
    return tuple(ADVANTAGES.names())


def resolve_estimator(name: str) -> Estimator:
    """The estimator a registered name or import path refers to (raises ``rlbase.PluginError``)."""
    fn: Estimator = ADVANTAGES.resolve(name).target
    return fn


@register_advantage("grpo")
def _grpo(rewards: Tensor, eps: float) -> Tensor:
    centred = rewards - rewards.mean(dim=-1, keepdim=True)
    if rewards.shape[-1] < 2:
        # The unbiased std of one sample is NaN; a lone sample has no group to compare with.
        return torch.zeros_like(rewards)
    std = rewards.std(dim=-1, keepdim=True, correction=1)
    return centred / (std + eps)


@register_advantage("dr_grpo")
def _dr_grpo(rewards: Tensor, eps: float) -> Tensor:
    return rewards - rewards.mean(dim=-1, keepdim=True)


@register_advantage("rloo")
def _rloo(rewards: Tensor, eps: float) -> Tensor:
    n = rewards.shape[-1]
    if n < 2:
        raise ValueError(f"rloo needs at least 2 samples per group, got {n}")
    others_mean = (rewards.sum(dim=-1, keepdim=True) - rewards) / (n - 1)
    return rewards - others_mean


def group_advantages(rewards: Tensor, mode: AdvantageMode | str, eps: float = 1e-6) -> Tensor:
    """Group-relative advantages for equally sized groups.

    Args:
        rewards: ``[G, n]`` rewards, one row per prompt (group), one column per sample.
        mode: ``"grpo"``, ``"dr_grpo"``, ``"rloo"`` (see the module docstring), another registered
            name or an import path.
        eps: Added to the std in ``"grpo"`` so that constant groups give 0, not NaN.

    Returns:
        ``[G, n]`` advantages, floating point (integer rewards are promoted to float32).

    Raises:
        ValueError: ``rewards`` not 2-D, or ``"rloo"`` with n < 2.
        rlbase.PluginError: unknown mode.

    Example:
        >>> group_advantages(torch.tensor([[1.0, 0.0]]), "dr_grpo")
        tensor([[ 0.5000, -0.5000]])
    """
    estimator = resolve_estimator(mode)
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [G, n], got shape {tuple(rewards.shape)}")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    adv = estimator(rewards, eps)
    # A float mean of equal values can be off by an ulp (16 x 0.7 in fp32), and dividing that by
    # a ~0 std would turn rounding into signal: zero constant groups explicitly.
    constant = (rewards == rewards[..., :1]).all(dim=-1, keepdim=True)
    return torch.where(constant, torch.zeros_like(adv), adv)


def group_advantages_ragged(groups: Sequence[Tensor], mode: AdvantageMode | str,
                            eps: float = 1e-6) -> list[Tensor]:
    """Advantages for groups of different sizes (for example after dropping failed samples).

    Args:
        groups: One 1-D reward tensor ``[n_g]`` per prompt.
        mode, eps: As in :func:`group_advantages`.

    Returns:
        One 1-D advantage tensor ``[n_g]`` per group, in order.
    """
    out = []
    for g in groups:
        if g.dim() != 1:
            raise ValueError(f"each ragged group must be 1-D, got shape {tuple(g.shape)}")
        out.append(group_advantages(g.unsqueeze(0), mode, eps).squeeze(0))
    return out
