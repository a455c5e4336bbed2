"""Build the DeepSpeed JSON config from the typed ``LearnerConfig``."""

from __future__ import annotations

from typing import Any

from rlplat.config.schema import LearnerConfig


def build_ds_config(cfg: LearnerConfig, lr: float, world_size: int, device: str,
                    dtype: str) -> dict[str, Any]:
    """DeepSpeed config for one learner group.

    Gradient accumulation is driven by the caller (``set_gradient_accumulation_boundary``), so the
    batch fields here only satisfy DeepSpeed's arithmetic check; the loss is pre-scaled for the
    global batch (see ``rlplat.algo.aggregate``).
    """
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    offload = cfg.offload_optimizer and cfg.zero_stage > 0
    if offload:
        # Pinned (page-locked) host memory: the asynchronous, full-bandwidth device <-> host copies.
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": cfg.micro_batch_size * world_size,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": lr, "betas": list(cfg.betas), "weight_decay": cfg.weight_decay,
                       **_adam_kind(device, offload)},
        },
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.warmup_steps > 0:
        config["scheduler"] = {"type": "WarmupLR", "params": {
            "warmup_min_lr": 0.0, "warmup_max_lr": lr, "warmup_num_steps": cfg.warmup_steps,
            "warmup_type": "linear"}}
    if dtype == "bfloat16":
        config["bf16"] = {"enabled": True}
    elif dtype == "float16":
        config["fp16"] = {"enabled": True}
    return config


def _adam_kind(device: str, offload: bool) -> dict[str, bool]:
    """Which AdamW DeepSpeed builds. Its own ops are compiled at a learner's first start (FusedAdam
    needs nvcc, which a pip-only GPU environment lacks, and the build runs under the actors' start
    deadline), so: torch's AdamW on CPU; torch's fused CUDA AdamW on GPU; DeepSpeed's CPU Adam only
    where the optimizer lives on the host (``learner.offload_optimizer``), which needs a C++
    compiler at its first start."""
    if device == "cpu":
        return {"torch_adam": True}
    return {} if offload else {"torch_adam": True, "fused": True}
