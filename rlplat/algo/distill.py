"""Distillation losses (pure torch): forward KL to a teacher's distribution, hidden-state cosine.

Shapes: ``B`` sequences, ``T`` next-token positions, ``V`` vocabulary, ``H`` hidden size. Every
loss is summed over the positions of ``mask`` and divided by ``num_tokens`` (the loss tokens of the
whole optimizer step, every rank), so micro-batch and rank shares add up like the SFT loss's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TeacherBatch:
    """What a teacher computed for one micro-batch (``rlplat.algo.batching.micro_batches`` order).

    Attributes:
        logprobs: ``[B, T, V]`` float32 next-token log-probabilities at the distillation
            temperature (positions align with the student's ``logits[:, :-1]``).
        hidden: ``[B, T, H]`` final hidden states at the same positions, when the cosine loss is on.
    """

    logprobs: Tensor
    hidden: Tensor | None = None


def forward_kl(student_logits: Tensor, teacher_logprobs: Tensor, mask: Tensor, num_tokens: float,
               temperature: float = 1.0) -> Tensor:
    """Sum over masked positions of KL(teacher || student) at ``temperature``, times T^2, over ``num_tokens``.

    The T^2 factor (Hinton et al. 2015) keeps the gradient's scale independent of the temperature.
    The student's logits are upcast to float32 position by position only inside ``log_softmax``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    student_lp = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    per_token = (teacher_logprobs.exp() * (teacher_logprobs - student_lp)).sum(-1)
    return (per_token * mask).sum() * temperature ** 2 / num_tokens


def hidden_cosine(student_hidden: Tensor, teacher_hidden: Tensor, mask: Tensor, num_tokens: float) -> Tensor:
    """Sum over masked positions of ``1 - cos(student, teacher)`` of the hidden states, over ``num_tokens``.

    Raises:
        ValueError: the hidden sizes differ (a projection would be a model of its own).
    """
    if student_hidden.shape[-1] != teacher_hidden.shape[-1]:
        raise ValueError(f"the cosine loss needs equal hidden sizes: student {student_hidden.shape[-1]}, "
                         f"teacher {teacher_hidden.shape[-1]}")
    cos = torch.nn.functional.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)
    return ((1.0 - cos) * mask).sum() / num_tokens


def token_cross_entropy(logprobs: Tensor, mask: Tensor, num_tokens: float) -> Tensor:
    """Sum over masked positions of ``-logprobs`` (the targets' log-probs), over ``num_tokens``."""
    return -(logprobs * mask).sum() / num_tokens
