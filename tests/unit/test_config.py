"""Config composition, typed conversion and validation (no Ray)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlplat.config.convert import to_config, to_plain
from rlplat.config.errors import ConfigError
from rlplat.config.loader import load
from rlplat.config.schema import Config
from rlplat.config.validate import validate
from rlplat.preflight import preflight

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.stem for p in (REPO / "rlplat" / "conf" / "experiment").glob("*.yaml"))


def check(cfg: Config) -> None:
    """What the launcher runs before Ray starts: validation of the config, then the preflight."""
    validate(cfg)
    preflight(cfg)


def test_default_composes_to_the_tiny_cpu_experiment() -> None:
    cfg, run_dir = load([])
    assert cfg.experiment == "tiny" and cfg.cluster.device == "cpu" and cfg.model.path is None
    assert cfg.stages == ("warmstart", "grpo")
    assert run_dir.parts[0] == "runs"
    check(cfg)


def test_defaults_live_in_the_schema_alone() -> None:
    """With no overrides, Hydra's composition equals ``Config()`` (the curriculum's options spelled
    out by its config group are its typed defaults)."""
    from curricula import UniformOptions
    from rlbase import to_plain

    cfg, _ = load([])
    composed, default = to_plain(cfg), to_plain(Config())
    assert composed.pop("curriculum").pop("options") == to_plain(UniformOptions())
    assert default.pop("curriculum").pop("options") == {}
    composed.pop("run_dir"), default.pop("run_dir")
    assert composed == default


def test_components_are_config_groups_with_typed_options() -> None:
    from curricula import ProgressiveOptions
    from rlbase import to_plain

    cfg, _ = load(["curriculum=progressive", "curriculum.options.sigma=0.2", "reward=math_format",
                   "model=llama_100m"])
    assert cfg.curriculum.name == "progressive"
    assert cfg.curriculum.options == {**to_plain(ProgressiveOptions()), "sigma": 0.2}
    assert cfg.reward.components == {"math": 1.0, "format": 0.1} and cfg.reward.accuracy == "math"
    assert cfg.model.tiny.hidden_size == 768 and cfg.model.tiny.num_layers == 16
    check(cfg)
    code, _ = load(["reward=code"])
    assert code.reward.components == {"code": 1.0}  # a preset replaces the components, never merges
    mix, _ = load(["reward.components={math: 1.0, concise: 0.1}"])
    assert mix.reward.components == {"math": 1.0, "concise": 0.1}


@pytest.mark.parametrize("overrides, field, hint", [
    (["curriculum=progresive"], "curriculum", "Did you mean 'progressive'"),
    (["total_steps=5"], "total_steps", "Did you mean 'grpo.total_steps'"),
    (["grpo.total_stepz=5"], "grpo.total_stepz", "Did you mean 'total_steps'"),
    (["curriculm.name=uniform"], "curriculm", "Did you mean 'curriculum'"),
    (["grpo=fast"], "grpo", "grpo.<field>=VALUE"),
    (["curriculum=progressive", "curriculum.options.sigmaa=1"], "curriculum.options.sigmaa", "Did you mean 'sigma'"),
    (["reward.options.math.timeout_s=5"], "reward.options.math.timeout_s", "+reward.options.math.timeout_s="),
    (["+experiment=ultra"], "experiment", "Did you mean 'ultra_grpo'"),
])
def test_a_near_miss_override_names_the_right_key(overrides: list[str], field: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(overrides)
    assert err.value.field == field and hint in str(err.value), str(err.value)


def test_naming_a_curriculum_selects_it_with_its_own_options() -> None:
    from curricula import ProgressiveOptions
    from rlbase import to_plain

    cfg, _ = load(["curriculum.name=progressive", "curriculum.options.sigma=0.3"])
    assert cfg.curriculum.options == {**to_plain(ProgressiveOptions()), "sigma": 0.3}
    plugin, _ = load(["curriculum.name=my_pkg.Mine", "+curriculum.options.k=1"])
    assert (plugin.curriculum.name, plugin.curriculum.options) == ("my_pkg.Mine", {"k": 1})


def test_a_plugin_option_is_added_with_plus() -> None:
    cfg, _ = load(["+reward.options.math.timeout_s=5"])
    assert cfg.reward.options == {"math": {"timeout_s": 5}}
    check(cfg)
    bad, _ = load(["+reward.options.math.timeot_s=5"])
    with pytest.raises(ConfigError, match="timeot_s"):
        check(bad)


def test_resume_accepts_its_own_run_dir_and_refuses_another(tmp_path: Path) -> None:
    from rlplat.runs import prepare_run_dir

    run = tmp_path / "run"
    cfg, _ = load([f"hydra.run.dir={run}", "seed=3"])
    prepare_run_dir(cfg, run)
    resumed, run_dir = load([f"resume={run}", f"hydra.run.dir={run}"])
    assert run_dir == run and resumed.seed == 3 and resumed.resume == str(run)
    with pytest.raises(ConfigError) as err:
        load([f"resume={run}", f"hydra.run.dir={tmp_path / 'other'}"])
    assert err.value.field == "hydra.run.dir" and f"resume={run}" in str(err.value)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates_in_dry_run(name: str) -> None:
    cfg, _ = load([f"+experiment={name}", "dry_run=true"])
    assert cfg.experiment == name
    check(cfg)


def test_ultra_holds_the_paper_recipe() -> None:
    cfg, _ = load(["+experiment=ultra_grpo", "dry_run=true"])
    g, c, r = cfg.grpo, cfg.cluster, cfg.rollout
    assert (c.num_nodes, c.devices_per_node, c.colocate) == (72, 8, True)
    assert (r.tensor_parallel_size, r.precision, cfg.old_logprobs) == (8, "fp8", "learner")
    assert (r.sampling.temperature, r.sampling.top_p) == (1.0, 1.0)
    assert (g.prompts_per_step, g.samples_per_prompt, g.global_batch) == (72, 16, 576)
    assert cfg.curriculum.name == "progressive" and cfg.reward.components == {"math": 1.0, "format": 0.1}


def test_unknown_key_names_the_field_and_suggests_the_fix() -> None:
    with pytest.raises(ConfigError) as err:
        to_config({"grpo": {"total_stepz": 3}})
    assert err.value.field == "grpo.total_stepz" and "total_steps" in str(err.value)


def test_a_keyword_section_is_spelled_as_the_keyword() -> None:
    # ``GRPOConfig.async_`` is ``grpo.async`` in every mapping: overrides, config.yaml, errors.
    cfg = load(["grpo.async.max_staleness=2"])[0]
    assert cfg.grpo.async_.max_staleness == 2
    assert to_plain(cfg)["grpo"]["async"] == {"max_staleness": 2} and "async_" not in to_plain(cfg)["grpo"]
    assert to_config(to_plain(cfg)) == cfg
    with pytest.raises(ConfigError) as err:
        to_config({"grpo": {"async_": {"max_staleness": 1}}})
    assert err.value.field == "grpo.async_" and "'async'" in str(err.value)


def test_wrong_type_is_rejected() -> None:
    with pytest.raises(ConfigError, match=re.escape("grpo.total_steps")):
        to_config({"grpo": {"total_steps": "many"}})
    with pytest.raises(ConfigError, match=re.escape("learner.zero_stage")):
        to_config({"learner": {"zero_stage": 4}})


@pytest.mark.parametrize("overrides, field", [
    (["grpo.global_batch=100"], "grpo.global_batch"),
    (["grpo.global_batch=129", "grpo.prompts_per_step=129", "grpo.samples_per_prompt=1"], "grpo.global_batch"),
    (["grpo.samples_per_prompt=1", "grpo.global_batch=32"], "grpo.samples_per_prompt"),
    (["model.dtype=bfloat16"], "model.dtype"),
    (["rollout.precision=fp4"], "rollout.precision"),
    (["grpo.mismatch.mode=mis", "grpo.mismatch.mis_lower=1.5"], "grpo.mismatch.mis_lower"),
    (["grpo.mismatch.mode=tis", "grpo.mismatch.tis_cap=0.5", "grpo.old_logprobs=learner"], "grpo.mismatch.tis_cap"),
    (["grpo.mismatch.mode=mis"], "grpo.old_logprobs"),
    (["rollout.precision=fp8", "grpo.mismatch.mode=mis", "grpo.old_logprobs=rollout"], "grpo.old_logprobs"),
    (["grpo.mismatch.level=document"], "grpo.mismatch.level"),
    (["sft.pack_tokens=0"], "sft.pack_tokens"),
    (["learner.pack_tokens=-1"], "learner.pack_tokens"),
    # Ulysses: a size that divides the ranks (2 here) and the heads; no distillation stage.
    (["learner.sequence_parallel=0"], "learner.sequence_parallel"),
    (["learner.sequence_parallel=3"], "learner.sequence_parallel"),
    (["learner.sequence_parallel=2", "model.tiny.num_kv_heads=1"], "learner.sequence_parallel"),
    (["learner.sequence_parallel=2", "stages=[distill]"], "learner.sequence_parallel"),
    (["learner.max_tokens_per_micro_batch=0"], "learner.max_tokens_per_micro_batch"),
    (["grpo.async.max_staleness=-1"], "grpo.async.max_staleness"),
    (["grpo.async.max_staleness=1", "cluster.device=gpu", "dry_run=true"], "grpo.async.max_staleness"),
    # vLLM's FP8 on GPU needs 16-bit activations.
    (["rollout.precision=fp8", "cluster.device=gpu", "model.dtype=float32", "dry_run=true"], "rollout.precision"),
    # DeepSpeed's state offload (co-located GPU learners) has no ZeRO-0 optimizer to move, and at
    # ZeRO-3 moves only its own FusedAdam unless the optimizer lives in host memory.
    (["cluster.device=gpu", "model.dtype=bfloat16", "learner.zero_stage=0", "dry_run=true"], "learner.zero_stage"),
    (["cluster.device=gpu", "model.dtype=bfloat16", "learner.zero_stage=3", "dry_run=true"],
     "learner.offload_optimizer"),
    (["sync.backend=ipc"], "sync.backend"),
    # Sampling values, and a context with no room for a prompt (it was reported after Ray started).
    (["rollout.sampling.temperature=-1"], "rollout.sampling.temperature"),
    (["rollout.sampling.temperature=0"], "rollout.sampling.temperature"),
    (["rollout.sampling.top_p=0"], "rollout.sampling.top_p"),
    (["rollout.sampling.top_p=1.5"], "rollout.sampling.top_p"),
    (["rollout.sampling.max_new_tokens=0"], "rollout.sampling.max_new_tokens"),
    (["rollout.max_model_len=16", "rollout.sampling.max_new_tokens=48"], "rollout.max_model_len"),
    (["grpo.async.max_stalenes=1"], "grpo.async.max_stalenes"),
    (["stages=[sft,grpo]"], "sft.data"),
    (["cluster.num_nodes=4"], "cluster.num_nodes"),
    (["model.path=/nonexistent/model"], "model.path"),
    (["stages=[grpo,nosuch]"], "stages"),
    (["reward.components={nosuch: 1.0}"], "reward.components"),
    (["curriculum.name=nosuch"], "curriculum.name"),
    (["grpo.advantage=nosuch"], "grpo.advantage"),
    (["data.source=file"], "data.file.path"),
    (["data.file.limit=0"], "data.file.limit"),
    (["data.file.answer_format=latex"], "data.file.answer_format"),
    (["grpo.toggle_eval=true"], "grpo.toggle_eval"),
    (["stages=[distill]", "distill.kl_weight=0"], "distill.kl_weight"),
    (["stages=[distill]", "distill.lm_weight=-1"], "distill.lm_weight"),
    (["stages=[distill]", "distill.batch_size=7"], "distill.batch_size"),
    (["stages=[distill]", "distill.temperature=0"], "distill.temperature"),
    (["stages=[distill]", "distill.teacher_path=/nonexistent/teacher"], "distill.teacher_path"),
    (["stages=[distill]", "distill.student=/nonexistent/student"], "distill.student"),
    (["stages=[distill]", "data.source=file", "data.file.path=x.jsonl"], "distill.data"),
    (["stages=[distill,sft]", "distill.student=new", "distill.student_shape.num_heads=4",
      "distill.student_shape.hidden_size=96", "sft.source=synthetic"], "distill.student_shape.num_heads"),
])
def test_bad_config_is_caught_before_ray(overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        check(load(overrides)[0])
    assert err.value.field == field
    assert "Fix:" in str(err.value)


@dataclass(frozen=True)
class Launched:
    """What a launch that ends before Ray starts returned and printed."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def launch_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> Callable[..., Launched]:
    """The launcher's ``main`` in this process, in ``tmp_path``: every launch here ends before Ray
    starts (a config error or a dry run), so a process of its own would only add its imports
    (test_launch_exits_2_with_one_paragraph_on_bad_config runs the real command once)."""
    from rlplat.launch import main

    monkeypatch.chdir(tmp_path)

    def launch(*args: str) -> Launched:
        code = main(list(args))
        out = capsys.readouterr()
        return Launched(code, out.out, out.err)

    return launch


def test_launch_exits_2_with_one_paragraph_on_bad_config(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "rlplat.launch", "grpo.total_stepz=3"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    msg = out.stderr.strip()
    assert "grpo.total_stepz" in msg and "Did you mean 'total_steps'" in msg and "\n" not in msg


def test_launch_ultra_without_cluster_fails_fast(launch_main: Callable[..., Launched], tmp_path: Path) -> None:
    out = launch_main("+experiment=ultra_grpo")
    assert out.returncode == 2 and "72 nodes" in out.stderr and "cluster.address" in out.stderr


def test_launch_ultra_dry_run_prints_plan(launch_main: Callable[..., Launched], tmp_path: Path) -> None:
    out = launch_main("+experiment=ultra_grpo", "dry_run=true")
    assert out.returncode == 0, out.stderr
    assert "72 node(s) x 8 GPU = 576 devices" in out.stdout
    assert "72 x vLLM TP8" in out.stdout and "Memory per device" in out.stdout
    assert "2 optimizer step(s) per rollout" in out.stdout
    assert not (tmp_path / "runs").exists()


def test_run_dir_holding_another_run_is_not_overwritten(tmp_path: Path) -> None:
    from rlplat.runs import prepare_run_dir

    cfg, _ = load([f"hydra.run.dir={tmp_path / 'r'}"])
    prepare_run_dir(cfg, tmp_path / "r")
    with pytest.raises(ConfigError, match="resume="):
        prepare_run_dir(cfg, tmp_path / "r")


def test_launch_refuses_a_run_dir_holding_another_run(launch_main: Callable[..., Launched], tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 1\n")
    out = launch_main(f"hydra.run.dir={run}")
    assert out.returncode == 2 and "already holds a run" in out.stderr and f"resume={run}" in out.stderr


def test_launch_names_file_and_row_of_a_malformed_dataset(launch_main: Callable[..., Launched], tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "1+1", "answer": "2"}\n{"question": "2+2", "answer": "4"}\n{"answer": "6"}\n')
    out = launch_main("stages=[grpo]", "data.source=file", f"data.file.path={data}")
    assert out.returncode == 2, out.stderr
    assert str(data) in out.stderr and "row 3" in out.stderr and "question" in out.stderr


def test_launch_names_file_and_row_of_a_malformed_sft_row_before_ray(launch_main: Callable[..., Launched], tmp_path: Path) -> None:
    data = tmp_path / "sft.jsonl"
    data.write_text('{"input": "q", "output": "a", "reasoning": "off"}\n{"input": "q", "output": "a", "reasoning": "on"}\n')
    out = launch_main("stages=[sft,grpo]", f"sft.data={data}")
    assert out.returncode == 2, out.stderr
    assert str(data) in out.stderr and "row 2" in out.stderr and "<think>" in out.stderr and "sft.data" in out.stderr


def test_launch_reports_a_missing_dataset_file(launch_main: Callable[..., Launched], tmp_path: Path) -> None:
    out = launch_main("stages=[grpo]", "data.source=file", f"data.file.path={tmp_path / 'nope.jsonl'}")
    assert out.returncode == 2 and "nope.jsonl" in out.stderr


def test_resume_of_a_directory_without_checkpoints_is_refused(launch_main: Callable[..., Launched], tmp_path: Path) -> None:
    out = launch_main(f"resume={tmp_path}")
    assert out.returncode == 2 and "resume" in out.stderr


def test_a_model_directory_without_a_loadable_tokenizer_is_a_config_error(tmp_path: Path) -> None:
    """What ``model.path=runs/<run>/final_model`` met when final_model held weights only."""
    from rlplat.models.tiny import build_tiny_llama

    model = build_tiny_llama(tmp_path / "model")
    check(load([f"model.path={model}"])[0])  # complete: accepted
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        (model / name).unlink(missing_ok=True)
    with pytest.raises(ConfigError) as err:
        check(load([f"model.path={model}"])[0])
    assert err.value.field == "model.path" and "no loadable tokenizer" in str(err.value)


def test_a_model_directory_without_weights_is_refused_before_ray(tmp_path: Path) -> None:
    """A directory holding config.json and a tokenizer only (the configs of a partial download)
    passed the checks, started Ray and a job, and failed in the learner 54 s later."""
    from rlplat.models.tiny import build_tiny_llama

    model = build_tiny_llama(tmp_path / "model")
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ConfigError) as err:
        check(load([f"model.path={model}", "stages=[grpo]"])[0])
    assert err.value.field == "model.path" and "no weights" in str(err.value) and "*.safetensors" in str(err.value)


def test_a_prompt_too_long_for_the_engines_is_refused_before_ray(tmp_path: Path) -> None:
    """It was reported after Ray and the stage had started (46 s), twice."""
    from rlplat.models.tiny import build_tiny_llama

    model = build_tiny_llama(tmp_path / "model")
    data = tmp_path / "rl.jsonl"
    data.write_text('{"question": "1+1", "answer": "2"}\n' + '{"question": "%s", "answer": "3"}\n' % ("1+" * 200))
    args = [f"model.path={model}", "data.source=file", f"data.file.path={data}", "rollout.max_model_len=128"]
    with pytest.raises(ConfigError) as err:
        check(load(args)[0])
    assert err.value.field == "rollout.max_model_len" and "max_model_len - max_new_tokens = 80" in str(err.value)
    with pytest.raises(ConfigError) as err:  # the prefilter's engines read the same prompts
        check(load([*args, "stages=[prefilter]"])[0])
    assert err.value.field == "rollout.max_model_len"


def test_a_model_of_ones_own_trains_with_grpo_alone_unless_the_stages_are_given(tmp_path: Path) -> None:
    """With ``model.path`` and no ``stages=`` the run started the built-in warm start and failed in it."""
    from rlplat.models.tiny import build_tiny_llama

    model = build_tiny_llama(tmp_path / "model")
    assert load([f"model.path={model}"])[0].stages == ("grpo",)
    assert load([f"model.path={model}", "stages=[warmstart,grpo]"])[0].stages == ("warmstart", "grpo")
    assert load([])[0].stages == ("warmstart", "grpo")  # the tiny default keeps its warm start


def test_a_hub_id_as_model_path_says_to_download_it_first() -> None:
    with pytest.raises(ConfigError) as err:
        check(load(["model.path=Qwen/Qwen3-0.6B", "stages=[grpo]"])[0])
    assert err.value.field == "model.path" and "Hugging Face Hub id" in str(err.value)
    assert "huggingface-cli download Qwen/Qwen3-0.6B --local-dir models/Qwen3-0.6B" in str(err.value)


def test_a_failed_run_suggests_resume_only_when_something_was_saved(tmp_path: Path) -> None:
    from rlplat.runs import how_to_continue

    assert "Nothing was saved" in how_to_continue(tmp_path) and "resume=" not in how_to_continue(tmp_path)
    (tmp_path / "stages" / "grpo").mkdir(parents=True)  # a stage that started and failed: nothing to skip
    assert "resume=" not in how_to_continue(tmp_path)
    (tmp_path / "stages" / "sft").mkdir()
    (tmp_path / "stages" / "sft" / "manifest.json").write_text("{}")  # a finished stage a resume skips
    assert f"resume={tmp_path}" in how_to_continue(tmp_path)


def test_a_distillation_text_file_with_a_bad_row_is_named_before_ray(tmp_path: Path) -> None:
    data = tmp_path / "texts.jsonl"
    data.write_text('{"text": "one"}\n{"text": ""}\n{"text": "three"}\n')
    with pytest.raises(ConfigError) as err:
        check(load(["stages=[distill]", f"distill.data={data}", "distill.eval_rows=1"])[0])
    assert err.value.field == "distill.data" and "texts.jsonl" in str(err.value) and "row 2" in str(err.value)


def test_a_teacher_and_student_with_different_vocabularies_are_refused_before_ray(tmp_path: Path) -> None:
    import json

    from rlplat.models.tiny import build_tiny_llama

    teacher, student = build_tiny_llama(tmp_path / "teacher"), build_tiny_llama(tmp_path / "student", seed=1)
    ok = ["stages=[distill]", f"distill.teacher_path={teacher}", f"distill.student={student}"]
    check(load(ok)[0])
    config = json.loads((student / "config.json").read_text())
    (student / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] + 8}))
    with pytest.raises(ConfigError) as err:
        check(load(ok)[0])
    assert err.value.field == "distill.student" and "do not share a vocabulary" in str(err.value)


@pytest.mark.parametrize("override, field", [
    ("nas.ffn_mults=[-1.0]", "nas.ffn_mults"),
    ("nas.speedup=0", "nas.speedup"),
    ("nas.max_shared=1.5", "nas.max_shared"),
    ("nas.alternatives=-1", "nas.alternatives"),
])
def test_bad_nas_settings_name_their_field(override: str, field: str) -> None:
    cfg, _ = load(["stages=[nas,grpo]", override])
    with pytest.raises(ConfigError) as err:
        check(cfg)
    assert err.value.field == field


def test_nas_without_variants_is_refused() -> None:
    cfg, _ = load(["stages=[nas]", "nas.ffn_mults=[]", "nas.no_attention=false"])
    with pytest.raises(ConfigError) as err:
        check(cfg)
    assert err.value.field == "nas.ffn_mults" and "nothing to choose" in str(err.value)
