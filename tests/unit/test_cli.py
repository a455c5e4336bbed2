"""The command lines answer ``--help`` without importing the heavy frameworks, the ``rlplat``
command hands its arguments to the module entry points, and ``run_dir=DIR`` chooses the run
directory as ``hydra.run.dir=DIR`` does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from rlplat import cli
from rlplat.config.errors import ConfigError
from rlplat.config.loader import conf_dir, load

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("ray", "torch", "vllm", "deepspeed", "transformers")
# Prints what a ``main(["--help"])`` wrote and which heavy frameworks it imported (there should be none).
HELP_PROBE = """
import sys
from {module} import main
try:
    code = main({args!r})
except SystemExit as stop:  # argparse's --help
    code = stop.code
print("IMPORTED:", sorted(m for m in {heavy!r} if m in sys.modules))
sys.exit(code)
"""


def _probe(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = HELP_PROBE.format(module=module, args=list(args), heavy=HEAVY)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_launch_help_prints_usage_groups_experiments_and_the_schema(flag: str) -> None:
    out = _probe("rlplat.launch", flag)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("usage: python -m rlplat.launch") and "IMPORTED: []" in text
    assert "model=tiny*" in text and "reward=math*" in text and "curriculum=uniform*" in text
    for experiment in (conf_dir() / "experiment").glob("*.yaml"):
        assert f"  {experiment.stem} " in text
    assert "LN-Nano (8B) scale on one node of 8 GPUs." in text  # an experiment's first comment sentence
    assert "rlplat/config/schema.py" in text and "docs/" in text


def test_launch_help_as_the_module_runs_it() -> None:
    out = subprocess.run([sys.executable, "-m", "rlplat.launch", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage:") and not out.stderr


def test_prebuild_help_prints_usage_and_builds_nothing() -> None:
    out = _probe("rlplat.learner.prebuild", "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m rlplat.learner.prebuild") and "IMPORTED: []" in out.stdout
    assert "[prebuild]" not in out.stdout + out.stderr  # it did not build


def test_rlplat_help_lists_its_commands() -> None:
    out = _probe("rlplat.cli", "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: rlplat COMMAND") and "IMPORTED: []" in out.stdout
    assert "train [OVERRIDE ...]" in out.stdout and "report RUN_DIR" in out.stdout


def test_the_rlplat_script_is_installed_and_forwards_to_the_launcher() -> None:
    script = shutil.which("rlplat", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the rlplat script is not installed: pip install -e . (scripts/setup.sh does)")
    out = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage: rlplat")
    out = subprocess.run([script, "train", "grpo.total_stepz=3"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Did you mean 'total_steps'" in out.stderr


def test_rlplat_train_and_report_hand_their_arguments_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[str]]] = []

    def record(name: str, code: int) -> Callable[[Sequence[str]], int]:
        def main(argv: Sequence[str]) -> int:
            seen.append((name, list(argv)))
            return code
        return main

    import rlplat.launch
    import rlplat.report.__main__

    monkeypatch.setattr(rlplat.launch, "main", record("launch", 0))
    monkeypatch.setattr(rlplat.report.__main__, "main", record("report", 3))
    assert cli.main(["train", "+experiment=tiny", "grpo.total_steps=2", "--help"]) == 0
    assert cli.main(["report", "runs/a", "runs/b", "--out", "cmp"]) == 3
    assert seen == [("launch", ["+experiment=tiny", "grpo.total_steps=2", "--help"]),
                    ("report", ["runs/a", "runs/b", "--out", "cmp"])]


def test_rlplat_refuses_an_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trian"]) == 2
    assert "no command 'trian'" in capsys.readouterr().err
    assert cli.main([]) == 2


def test_launch_run_dir_chooses_the_run_directory(tmp_path: Path) -> None:
    cfg, run_dir = load([f"run_dir={tmp_path / 'mine'}"])
    assert run_dir == tmp_path / "mine" and cfg.run_dir == str(tmp_path / "mine")
    same, _ = load([f"run_dir={tmp_path / 'mine'}", f"hydra.run.dir={tmp_path / 'mine'}"])
    assert same.run_dir == cfg.run_dir
    with pytest.raises(ConfigError) as err:
        load([f"run_dir={tmp_path / 'a'}", f"hydra.run.dir={tmp_path / 'b'}"])
    assert err.value.field == "run_dir" and "two run directories" in str(err.value)


def test_launch_resume_with_its_own_run_dir(tmp_path: Path) -> None:
    from rlplat.runs import prepare_run_dir

    run = tmp_path / "run"
    cfg, _ = load([f"run_dir={run}", "seed=3"])
    prepare_run_dir(cfg, run)
    resumed, run_dir = load([f"resume={run}", f"run_dir={run}"])
    assert run_dir == run and resumed.seed == 3
    with pytest.raises(ConfigError):
        load([f"resume={run}", f"run_dir={tmp_path / 'other'}"])


def test_launch_refuses_run_dir_set_in_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    (conf / "experiment" / "elsewhere.yaml").write_text("# @package _global_\nrun_dir: /somewhere/else\n")
    monkeypatch.setenv("RLPLAT_CONF_DIR", str(conf))
    with pytest.raises(ConfigError) as err:
        load(["+experiment=elsewhere"])
    assert err.value.field == "run_dir" and "hydra.run.dir" in str(err.value)
