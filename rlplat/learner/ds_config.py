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
    if cfg.offload_optimizer and cfg.zero_stage > 0:
        zero["offload_optimizer"] = {"device": "cpu"}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": cfg.micro_batch_size * world_size,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": lr, "betas": list(cfg.betas), "weight_decay": cfg.weight_decay,
                       # CPU: plain torch AdamW (DeepSpeed's fused/CPU Adam ops need a compiler
                       # toolchain at first use).
                       "torch_adam": device == "cpu"},
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
