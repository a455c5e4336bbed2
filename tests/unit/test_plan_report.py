"""The dry run's numbers: parameter count and per-device memory (not the wording)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlplat.config.loader import load
from rlplat.runtime.plan_report import GIB, estimate_memory, param_count


def test_param_count_of_the_tiny_model_equals_the_built_model(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from rlplat.models.tiny import build_tiny_llama

    cfg, _ = load([])
    model = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "m", cfg.model.tiny))
    built = sum(p.numel() for p in model.parameters())
    assert param_count(cfg) == built  # from the config alone, before the model exists
    cfg_dir, _ = load([f"model.path={tmp_path / 'm'}"])
    assert param_count(cfg_dir) == built  # from the model directory's config.json


def test_memory_estimate_of_the_paper_recipe() -> None:
    """LN-Ultra: 253B bf16 parameters, ZeRO-3 over 576 ranks, optimizer offloaded, TP8 FP8 engines."""
    cfg, _ = load(["+experiment=ultra_grpo", "dry_run=true"])
    m = estimate_memory(cfg)
    p, dp = 253e9, 576
    assert m.weights == pytest.approx(p * 2 / dp / GIB)
    assert m.grads == pytest.approx(p * 2 / dp / GIB)
    assert m.optimizer == 0.0 and m.host_optimizer == pytest.approx(p * 12 / dp / GIB)
    assert m.reference == pytest.approx(m.weights)  # sharded like the policy under ZeRO-3
    assert m.engine_weights == pytest.approx(p * 1 / 8 / GIB)
    assert m.engine_kv == pytest.approx(0.6 * 80 - m.engine_weights)


def test_memory_estimate_without_sharding_keeps_whole_copies() -> None:
    cfg, _ = load(["learner.zero_stage=0", "learner.reference_model=false"])
    m = estimate_memory(cfg)
    p = param_count(cfg)
    assert (m.weights, m.grads, m.optimizer, m.reference) == pytest.approx((p * 4 / GIB, p * 4 / GIB, p * 8 / GIB, 0))
    assert m.engine_kv == cfg.rollout.cpu_kvcache_gib
