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


def test_nano_grpo_phase_lines_against_a_hand_computation() -> None:
    """nano_grpo: 8B bf16 parameters, ZeRO-2 over 8 ranks, a reference model, TP1 FP8 engines at 0.5 of
    80 GiB, co-located (the engine sleeps while the learners train, the learners offload their state
    while it generates), micro-batch 2 x 16384 tokens with gradient checkpointing, hidden 4096, 32
    layers, vocabulary 128256."""
    from rlplat.runtime.plan_report import activation_gib, describe, phase_memory

    cfg, _ = load(["+experiment=nano_grpo", "dry_run=true"])
    p, dp, gib = 8e9, 8, GIB
    learner = (p * 2 + p * 2 / dp + p * 12 / dp + p * 2) / gib  # weights, grads/8, fp32 Adam/8, reference
    engine = 0.5 * 80  # FP8 weights and the KV cache fill the engine's share
    t, h, n, v = 2 * 16384, 4096, 32, 128256
    layer = 34 * t * h * 2 / 2
    with_ckpt = (n * t * h * 2 + layer + t * v * (2 + 4)) / gib
    without = (n * layer + t * v * (2 + 4)) / gib
    assert activation_gib(cfg, True) == pytest.approx(with_ckpt)
    assert activation_gib(cfg, False) == pytest.approx(without)
    phases = phase_memory(cfg, estimate_memory(cfg))
    assert phases.generation == pytest.approx(engine)  # the learners' state is in host memory
    assert phases.training == pytest.approx(learner + with_ckpt)  # the engine sleeps: 78.58
    text = describe(cfg)
    assert f"  generation  {engine:.2f} GiB" in text and f"  training  {learner + with_ckpt:.2f} GiB" in text
    assert "WARNING" not in text
    kept, _ = load(["+experiment=nano_grpo", "dry_run=true", "learner.offload_states=false"])
    assert phase_memory(kept, estimate_memory(kept)).generation == pytest.approx(engine + learner)  # 82.84
    assert "WARNING: generation needs 82.84 GiB of 80: does not fit" in describe(kept)


def test_ultra_grpo_fits_by_splitting_each_sequence_over_four_ranks() -> None:
    """ultra_grpo's training phase: the sharded state (weights, grads, reference: 3 x 2 bytes x 253B / 576)
    plus one 32k-token micro-batch's activations (hidden 16384, 162 layers, vocabulary 128256, with
    gradient checkpointing). Whole, that is over 80 GiB; split over N ranks each keeps 1/N of the
    activations, and N = 4, the experiment's ``learner.sequence_parallel``, is the smallest power of 2
    that fits (2 does not). Without it the plan warns and names 4."""
    from rlplat.runtime.plan_report import describe, phase_memory, sequence_parallel_fit

    state = 3 * 253e9 * 2 / 576 / GIB
    t, h, n, v = 32768, 16384, 162, 128256
    act = (n * t * h * 2 + 34 * t * h * 2 / 2 + t * v * (2 + 4)) / GIB  # 202.48 whole
    assert state + act / 2 > 80 >= state + act / 4
    cfg, _ = load(["+experiment=ultra_grpo", "dry_run=true"])
    assert cfg.learner.sequence_parallel == 4
    phases = phase_memory(cfg, estimate_memory(cfg))
    assert phases.activations == pytest.approx(act / 4) and phases.training == pytest.approx(state + act / 4)  # 53.08
    text = describe(cfg)
    assert "data parallel 144 x sequence parallel 4 (Ulysses) = 576 ranks" in text
    assert f"  training  {state + act / 4:.2f} GiB" in text and "WARNING" not in text
    whole, _ = load(["+experiment=ultra_grpo", "dry_run=true", "learner.sequence_parallel=1"])
    phases = phase_memory(whole, estimate_memory(whole))
    assert phases.training == pytest.approx(state + act)  # 204.94
    fit = sequence_parallel_fit(whole, phases)
    assert fit is not None and fit[0] == 4 and fit[1] == pytest.approx(state + act / 4)
    text = describe(whole)
    assert f"WARNING: training needs {state + act:.2f} GiB of 80: does not fit" in text
    assert f"learner.sequence_parallel=4 (each sequence split over 4 ranks: training {state + act / 4:.2f} GiB)" in text


def test_the_plan_says_when_the_architecture_is_unknown() -> None:
    from rlplat.runtime.plan_report import activation_gib, describe

    cfg, _ = load(["+experiment=nano_grpo", "dry_run=true", "model.hidden_size=0"])
    assert activation_gib(cfg, True) is None and "activations  unknown" in describe(cfg)


def test_a_dry_run_names_the_files_it_did_not_read_and_cannot_size_a_model_it_cannot_see(tmp_path: Path) -> None:
    """It said "config valid" for a model and data file that did not exist, and sized the model as
    the tiny default (0.0008B)."""
    from rlplat.config.errors import ConfigError
    from rlplat.runtime.plan_report import describe

    data = tmp_path / "rl.jsonl"
    data.write_text('{"question": "1+1", "answer": "2"}\n')
    cfg, _ = load(["model.path=/cluster/models/llama3-8b", "stages=[grpo]", "data.source=file",
                   f"data.file.path={data}", "dry_run=true"])
    with pytest.raises(ConfigError) as err:
        describe(cfg)
    assert err.value.field == "model.params_b" and "/cluster/models/llama3-8b" in str(err.value)
    cfg, _ = load(["model.path=/cluster/models/llama3-8b", "model.params_b=8", "stages=[grpo]", "data.source=file",
                   f"data.file.path={data}", "dry_run=true"])
    text = describe(cfg)
    assert "model.path=/cluster/models/llama3-8b (not on this machine)" in text
    assert f"data.file.path={data} (here)" in text and "Model: 8B parameters" in text
