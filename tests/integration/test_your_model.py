"""docs/your-model.md, run as a new user would: its three commands word for word, in a directory laid
out as the document says (``models/qwen2.5-0.5b-instruct``: a small random Qwen2 checkpoint of
``families.py`` in place of the download; ``data/sft.jsonl``: the shipped toggle file in the
Llama-Nemotron schema; ``data/gsm8k.jsonl``: GSM8K-shaped arithmetic), plus only the settings that
make the runs short. The check runs the launcher in this process (it ends before Ray)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from families import build_family

from launch_helpers import launch_as_given
from rlplat.metrics import read_metrics

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "your-model.md"
# What the test adds to the document's commands: short runs (SFT as long as toggle compliance takes
# on the tiny model; GRPO two steps on one learner and one engine).
SHORT = {"sft": ("sft.steps=150", "sft.batch_size=16", "sft.pack_tokens=96", "cluster.dashboard=false"),
         "grpo": ("grpo.total_steps=2", "grpo.prompts_per_step=4", "grpo.samples_per_prompt=4",
                  "grpo.global_batch=16", "rollout.sampling.max_new_tokens=24", "cluster.devices_per_node=1",
                  "cluster.dashboard=false")}


def doc_commands() -> list[list[str]]:
    """The arguments of every ``python -m rlplat.launch`` line of the document's bash blocks, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    prefix = ["python", "-m", "rlplat.launch"]
    lines = [shlex.split(line) for block in blocks for line in block.splitlines()]
    return [words[len(prefix):] for words in lines if words[:len(prefix)] == prefix]


def workspace(root: Path) -> Path:
    """``root`` laid out as the document's reader has it: the model directory and the two files."""
    build_family("qwen2", root / "models" / "qwen2.5-0.5b-instruct")
    (root / "data").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "sft_toggle.jsonl", root / "data" / "sft.jsonl")
    rows = [{"question": f"What is {a} + {b}?", "answer": f"{a}+{b}={a + b}\n#### {a + b}"}
            for a in range(3, 60, 7) for b in range(2, 40, 5)]
    (root / "data" / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _arg(args: list[str], key: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(key + "="))


def test_the_documented_commands_check_then_sft_then_grpo_from_its_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    check, sft, grpo = doc_commands()
    root = workspace(tmp_path)

    from rlplat.launch import main

    monkeypatch.chdir(root)
    assert main(check) == 0, capsys.readouterr().err
    plan = capsys.readouterr().out
    assert "Files (read and checked as a launch would)" in plan and "Memory per device" in plan, plan
    assert not (root / "runs").exists()

    sft_dir = root / _arg(sft, "hydra.run.dir")
    rc, out = launch_as_given([*sft, *SHORT["sft"]], sft_dir, root)
    assert rc == 0, out[-3000:]
    assert out.splitlines()[0] == f"rlplat: run directory {_arg(sft, 'hydra.run.dir')}"
    manifest = json.loads((sft_dir / "stages" / "sft" / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert manifest["model_path"] == _arg(grpo, "model.path")  # what SFT wrote is what GRPO reads
    assert metrics["sft/loss_last"] < metrics["sft/loss_first"]
    # The 8 held-out rows (4 prompts, both modes), greedy answers of vLLM engines.
    assert metrics["toggle/on_compliance"] >= 0.75 and metrics["toggle/off_compliance"] >= 0.75, metrics

    grpo_dir = root / _arg(grpo, "hydra.run.dir")
    rc, out = launch_as_given([*grpo, *SHORT["grpo"]], grpo_dir, root)
    assert rc == 0, out[-3000:]
    rows = read_metrics(grpo_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all("response/truncated_frac" in r for r in rows)
    assert (grpo_dir / "report.md").is_file() and (grpo_dir / "final_model" / "config.json").is_file()
    assert [p.name for p in (grpo_dir / "stages").iterdir()] == ["grpo"]  # GRPO alone, from the SFT model
