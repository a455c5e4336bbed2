"""Distillation losses (rlplat.algo.distill) against torch's own definitions."""

from __future__ import annotations

import pytest
import torch

from rlplat.algo.distill import forward_kl, hidden_cosine, token_cross_entropy


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 5, 7, generator=g)
    teacher = torch.randn(2, 5, 7, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    return student, teacher, mask


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_forward_kl_is_torchs_kl_div_of_the_tempered_distributions(temperature: float) -> None:
    student, teacher, mask = _inputs()
    t_lp = torch.log_softmax(teacher / temperature, -1)
    s_lp = torch.log_softmax(student / temperature, -1)
    per_token = torch.nn.functional.kl_div(s_lp, t_lp, log_target=True, reduction="none").sum(-1)
    want = per_token[mask].sum() * temperature ** 2 / 8
    assert float(forward_kl(student, t_lp, mask, 8.0, temperature)) == pytest.approx(float(want), rel=1e-6)


def test_forward_kl_is_zero_for_the_teachers_own_logits_and_positive_otherwise() -> None:
    student, teacher, mask = _inputs()
    t_lp = torch.log_softmax(teacher, -1)
    assert float(forward_kl(teacher, t_lp, mask, 8.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(forward_kl(student, t_lp, mask, 8.0)) > 0.1


def test_forward_kl_ignores_positions_outside_the_mask() -> None:
    student, teacher, mask = _inputs()
    t_lp = torch.log_softmax(teacher, -1)
    changed = student.clone()
    changed[0, 4] += 100.0  # a masked-out position
    assert float(forward_kl(changed, t_lp, mask, 8.0)) == pytest.approx(float(forward_kl(student, t_lp, mask, 8.0)))


def test_forward_kl_gradient_moves_the_student_towards_the_teacher() -> None:
    student, teacher, mask = _inputs()
    t_lp = torch.log_softmax(teacher, -1)
    s = student.clone().requires_grad_(True)
    loss = forward_kl(s, t_lp, mask, 8.0)
    loss.backward()
    assert s.grad is not None
    stepped = (s - 1.0 * s.grad).detach()
    assert float(forward_kl(stepped, t_lp, mask, 8.0)) < float(loss)


def test_hidden_cosine_is_zero_for_parallel_states_and_refuses_other_sizes() -> None:
    h = torch.randn(2, 5, 16)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert float(hidden_cosine(3.0 * h, h, mask, 10.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(hidden_cosine(-h, h, mask, 10.0)) == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(ValueError, match="equal hidden sizes"):
        hidden_cosine(torch.randn(2, 5, 8), h, mask, 10.0)


def test_token_cross_entropy_is_the_masked_sum_over_the_given_count() -> None:
    lp = torch.tensor([[-1.0, -2.0, -3.0]])
    mask = torch.tensor([[True, False, True]])
    assert float(token_cross_entropy(lp, mask, 4.0)) == pytest.approx(1.0)
