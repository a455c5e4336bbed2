"""What a re-run skips: each stage's content hash covers its own config sections, its input model
and the stages before it, and nothing that only says where or how the run happens."""

from __future__ import annotations

from pathlib import Path

from rlplat.config.loader import load
from rlplat.stages.base import StageManifest, read_manifest, stage_dir, write_manifest
from rlplat.stages.pipeline import stage_hash, up_to_date


def _hash(stage: str, *overrides: str, model: str = "/m", upstream: str = "") -> str:
    cfg = load(["stages=[warmstart,distill,sft,grpo]", *overrides])[0]
    return stage_hash(cfg, stage, model, upstream)


def test_a_stage_hash_follows_its_own_sections_only() -> None:
    base = _hash("sft")
    assert _hash("sft", "sft.steps=7") != base
    assert _hash("sft", "seed=3") != base
    assert _hash("sft", "grpo.total_steps=7") == base  # GRPO's settings do not redo SFT
    assert _hash("grpo", "grpo.total_steps=7") != _hash("grpo")
    assert _hash("distill", "distill.temperature=2.0") != _hash("distill")
    assert _hash("distill", "sft.steps=7") == _hash("distill")


def test_run_local_fields_do_not_change_any_hash() -> None:
    for stage in ("warmstart", "sft", "grpo"):
        assert _hash(stage, "cluster.dashboard=false", "faults.inject=[engine0:exit@generate:2]",
                     "timeouts.train_s=5", "cluster.dashboard_port=9000") == _hash(stage)


def test_input_model_and_upstream_hash_are_part_of_it() -> None:
    assert _hash("grpo", model="/a") != _hash("grpo", model="/b")
    assert _hash("grpo", upstream="x") != _hash("grpo", upstream="y")


def test_a_manifest_stands_only_with_its_hash_and_its_output(tmp_path: Path) -> None:
    out = tmp_path / "model"
    manifest = StageManifest("sft", str(out), "/in", config_hash="abc")
    write_manifest(tmp_path, "sft", manifest)
    assert (stage_dir(tmp_path, "sft") / "manifest.json").is_file()
    assert read_manifest(tmp_path, "sft") == manifest
    assert not up_to_date(manifest, "abc")  # the output model is gone
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert up_to_date(manifest, "abc") and not up_to_date(manifest, "abd") and not up_to_date(None, "abc")


def test_distillation_after_nas_distils_from_the_parent() -> None:
    from rlplat.stages.base import NAS_PARENT, StageContext
    from rlplat.stages.distill import teacher_of

    cfg = load(["stages=[nas,distill]"])[0]
    nas = StageManifest("nas", "/run/nas_model", "/parent", artifacts={NAS_PARENT: "/parent"})
    assert teacher_of(StageContext(cfg, Path("/run"), "/run/nas_model", False, (nas,))) == "/parent"
    assert teacher_of(StageContext(cfg, Path("/run"), "/input", False)) == "/input"  # no NAS: the input model
    given = load(["stages=[nas,distill]", "distill.teacher_path=/teacher"])[0]
    assert teacher_of(StageContext(given, Path("/run"), "/run/nas_model", False, (nas,))) == "/teacher"
