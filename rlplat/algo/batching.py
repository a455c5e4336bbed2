"""Rollout-to-optimizer-step bookkeeping.

The paper draws 72 prompts x 16 samples = 1152 samples per rollout and trains with a global batch
of 576, so each rollout yields exactly 2 optimizer steps (LN §5.1); the second step is mildly
off-policy, which is what the clipped ratio in ``losses.py`` is for.
"""

from __future__ import annotations


def num_optimizer_steps(prompts: int, samples_per_prompt: int, global_batch: int) -> int:
    """Number of optimizer steps one rollout yields.

    Args:
        prompts: Prompts per rollout (72 in the paper).
        samples_per_prompt: Samples per prompt, the GRPO group size (16).
        global_batch: Samples per optimizer step across all data-parallel ranks (576).

    Returns:
        ``prompts * samples_per_prompt // global_batch`` (2 for the paper's numbers).

    Raises:
        ValueError: a non-positive argument, or samples not divisible by ``global_batch``
            (a partial last step would silently weigh its samples differently).
    """
    for name, value in (
        ("prompts", prompts),
        ("samples_per_prompt", samples_per_prompt),
        ("global_batch", global_batch),
    ):
        if value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    samples = prompts * samples_per_prompt
    if samples % global_batch:
        raise ValueError(
            f"{prompts} prompts x {samples_per_prompt} samples = {samples} samples per rollout is not a "
            f"multiple of the global batch {global_batch}; choose a global batch that divides {samples}"
        )
    return samples // global_batch
