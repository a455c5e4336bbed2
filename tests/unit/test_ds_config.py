"""The DeepSpeed config a learner group starts from (``rlplat.learner.ds_config``; pure)."""

from __future__ import annotations

from dataclasses import replace

from rlplat.config.schema import LearnerConfig
from rlplat.learner.ds_config import build_ds_config


def _optimizer(device: str, **learner: object) -> dict[str, object]:
    cfg = replace(LearnerConfig(), **learner)  # type: ignore[arg-type]
    params: dict[str, object] = build_ds_config(cfg, 1e-5, 8, device, "bfloat16")["optimizer"]["params"]
    return params


def test_no_learner_compiles_an_adam_op_unless_its_optimizer_lives_on_the_host() -> None:
    """DeepSpeed's FusedAdam is built with nvcc inside every learner at its first start (a pip-only
    GPU environment has no nvcc): GPU learners use torch's fused CUDA AdamW, CPU ones torch's AdamW."""
    gpu, cpu = _optimizer("gpu"), _optimizer("cpu")
    assert gpu["torch_adam"] is True and gpu["fused"] is True and cpu["torch_adam"] is True
    assert "fused" not in cpu


def test_optimizer_offload_keeps_deepspeed_s_cpu_adam_in_pinned_memory() -> None:
    cfg = replace(LearnerConfig(), offload_optimizer=True, zero_stage=2)
    config = build_ds_config(cfg, 1e-5, 8, "gpu", "bfloat16")
    assert config["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert "torch_adam" not in config["optimizer"]["params"]  # DeepSpeedCPUAdam: the host-side step
