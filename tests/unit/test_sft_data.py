"""SFT rows in the Llama-Nemotron post-training shape: reading, the toggle, row-numbered errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlplat.data.datasets import DataError
from rlplat.data.sft import read_sft_examples, think_blocks_ok, to_train_sequences

DATA = Path(__file__).resolve().parents[1] / "data" / "sft_toggle.jsonl"


def _write(tmp_path: Path, rows: list[dict[str, Any]]) -> str:
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_the_shipped_file_holds_paired_on_and_off_answers() -> None:
    examples = read_sft_examples(str(DATA))
    assert len(examples) == 48
    on, off = examples[0::2], examples[1::2]
    assert all(a.messages == b.messages for a, b in zip(on, off))  # the same prompt in both modes
    assert {e.reasoning for e in on} == {"on"} and {e.reasoning for e in off} == {"off"}


@pytest.mark.parametrize("text, mode, ok", [
    ("<think>carry 1</think>42", "on", True),
    ("42", "on", False), ("<think></think>42", "on", False), ("<think>a</think>", "on", False),
    ("pre<think>a</think>42", "on", False), ("<think>a</think><think>b</think>42", "on", False),
    ("42", "off", True), ("<think>a</think>42", "off", False),
])
def test_think_blocks_follow_the_mode(text: str, mode: str, ok: bool) -> None:
    assert think_blocks_ok(text, mode) is ok  # type: ignore[arg-type]


def test_the_toggle_is_the_system_prompt_and_the_loss_is_on_the_response(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from rlplat.models.tiny import build_tiny_llama

    tok = AutoTokenizer.from_pretrained(build_tiny_llama(tmp_path / "m"))
    on, off = read_sft_examples(str(DATA))[:2]
    seq_on, seq_off = to_train_sequences([on, off], tok)
    prompt_on = tok.decode(list(seq_on.prompt_ids))
    assert "detailed thinking on" in prompt_on and "What is 19 + 83?" in prompt_on
    assert "detailed thinking off" in tok.decode(list(seq_off.prompt_ids))
    assert tok.decode(list(seq_on.completion_ids)).startswith("<think>")
    assert seq_off.completion_ids[-1] == tok.eos_token_id


def test_a_string_input_and_a_row_system_prompt_follow_the_toggle(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"input": "hi", "output": "hello", "reasoning": "off", "system_prompt": "Be brief."}])
    (ex,) = read_sft_examples(path)
    assert ex.messages == (("user", "hi"),) and ex.system == "Be brief."


@pytest.mark.parametrize("bad, field", [
    ({"input": [{"role": "user", "content": "q"}], "output": "a", "reasoning": "maybe"}, "reasoning"),
    ({"input": [{"role": "user", "content": "q"}], "output": "", "reasoning": "off"}, "output"),
    ({"input": [{"role": "user", "content": "q"}], "output": "a", "reasoning": "on"}, "output"),
    ({"input": [{"role": "robot", "content": "q"}], "output": "a", "reasoning": "off"}, "input"),
    ({"input": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}], "output": "a",
      "reasoning": "off"}, "input"),
])
def test_a_malformed_row_is_named_with_file_and_row(tmp_path: Path, bad: dict[str, Any], field: str) -> None:
    good = {"input": [{"role": "user", "content": "q"}], "output": "a", "reasoning": "off"}
    path = _write(tmp_path, [good, bad])
    with pytest.raises(DataError) as err:
        read_sft_examples(path)
    assert err.value.field == field and err.value.row == "row 2 (line 2)" and path in str(err.value)


def test_compliance_counts_each_mode_by_its_rule() -> None:
    from rlplat.runtime.toggle_eval import compliance

    answers = [("on", "<think>a</think>1"), ("on", "1"), ("off", "2"), ("off", "<think>b</think>2"), ("off", "3")]
    assert compliance(answers) == {"toggle/on_compliance": 0.5, "toggle/off_compliance": pytest.approx(2 / 3)}  # type: ignore[arg-type]
    assert compliance([("off", "2")]) == {"toggle/off_compliance": 1.0}
