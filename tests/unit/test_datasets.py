"""Tests for rlplat.data.datasets: local files, validation messages, toggle and chat template."""

from __future__ import annotations

import json
import os
from dataclasses import replace

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # before `datasets` is first imported

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rlplat.config.schema import DatasetConfig
from rlplat.data.chat import THINKING_OFF, THINKING_ON
from rlplat.data.datasets import (
    DataError,
    extract_reference,
    load_prompts,
    validate_dataset_file,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

DATA = Path(__file__).resolve().parents[1] / "data"
GSM8K = str(DATA / "gsm8k_small.jsonl")
MATH = str(DATA / "math_small.jsonl")

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer built locally, with a jinja chat template; nothing downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2, "What": 3, "is": 4}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", bos_token="<s>", eos_token="</s>")
    tok.chat_template = TEMPLATE
    return tok


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------
# Well-formed files
# ---------------------------------------------------------------------------------------------


def test_gsm8k_jsonl_extracts_reference_after_hashes() -> None:
    items = load_prompts(DatasetConfig(path=GSM8K, answer_format="gsm8k"))
    assert [i.reference for i in items] == ["72", "24000", "5"]
    assert [i.uid for i in items] == ["gsm8k_small.jsonl:1", "gsm8k_small.jsonl:2", "gsm8k_small.jsonl:3"]
    assert [i.index for i in items] == [0, 1, 2]
    assert items[2].question == "What is 2 + 3?"
    assert items[2].system is None
    assert items[2].text == "What is 2 + 3?\n"  # plain fallback without a tokenizer


def test_math_jsonl_extracts_last_boxed_with_metadata_and_ids() -> None:
    cfg = DatasetConfig(
        path=MATH,
        prompt_field="problem",
        answer_field="solution",
        answer_format="boxed",
        id_field="unique_id",
        metadata_fields=("level", "type"),
        limit=1,
    )
    (item,) = load_prompts(cfg)
    assert item.reference == "\\frac{1}{2}"
    assert item.uid == "test/prealgebra/1.json"
    assert item.metadata == {"level": "Level 1", "type": "Prealgebra"}


def test_parquet_file_and_numeric_answers(tmp_path: Path) -> None:
    import datasets

    path = str(tmp_path / "prompts.parquet")
    datasets.Dataset.from_dict({"q": ["one?", "two?"], "a": [1.0, 2.5], "id": [7, 8]}).to_parquet(path)
    items = load_prompts(DatasetConfig(path=path, prompt_field="q", answer_field="a", id_field="id"))
    assert [(i.uid, i.question, i.reference) for i in items] == [("7", "one?", "1"), ("8", "two?", "2.5")]


def test_a_directory_saved_with_save_to_disk(tmp_path: Path) -> None:
    """A dataset a user saved with ``datasets`` (GSM8K style), and a dataset dictionary's train split."""
    import datasets

    rows = {"question": ["one?", "two?"], "answer": ["so #### 1", "so #### 2"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "plain"))
    items = load_prompts(DatasetConfig(path=str(tmp_path / "plain"), answer_format="gsm8k"))
    assert [(i.uid, i.question, i.reference) for i in items] == [("plain:1", "one?", "1"), ("plain:2", "two?", "2")]
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                                   "test": datasets.Dataset.from_dict({"question": ["x?"], "answer": ["#### 9"]})})
    splits.save_to_disk(str(tmp_path / "splits"))
    assert len(load_prompts(DatasetConfig(path=str(tmp_path / "splits"), answer_format="gsm8k"))) == 2
    datasets.DatasetDict({"test": splits["test"]}).save_to_disk(str(tmp_path / "no_train"))
    with pytest.raises(DataError, match="no 'train' split"):
        load_prompts(DatasetConfig(path=str(tmp_path / "no_train")))
    (tmp_path / "not_saved").mkdir()
    with pytest.raises(DataError, match="did not save"):
        load_prompts(DatasetConfig(path=str(tmp_path / "not_saved")))


def test_json_array_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.json", '[{"question": "a?", "answer": "x"}, {"question": "b?", "answer": "y"}]')
    assert [i.reference for i in load_prompts(DatasetConfig(path=path))] == ["x", "y"]


def test_code_tests_pass_through_unchanged(tmp_path: Path) -> None:
    path = _write(tmp_path, "code.jsonl", '{"question": "def f", "answer": ["assert f() == 1"], "fmt": "assert"}\n')
    (item,) = load_prompts(DatasetConfig(path=path, metadata_fields=("fmt",)))
    assert item.reference == ["assert f() == 1"] and item.metadata == {"fmt": "assert"}


# ---------------------------------------------------------------------------------------------
# Toggle, system prompt, chat template, suffix
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "line"), [("on", THINKING_ON), ("off", THINKING_OFF)])
def test_thinking_toggle_sets_system_prompt(mode: str, line: str, tokenizer: PreTrainedTokenizerFast) -> None:
    items = load_prompts(DatasetConfig(path=GSM8K, thinking=mode, limit=1), tokenizer)  # type: ignore[arg-type]
    assert items[0].system == line
    assert items[0].text.startswith(f"<|system|>{line}\n<|user|>Natalia sold clips")
    assert items[0].text.endswith("<|assistant|>")


def test_toggle_is_prepended_to_row_system_prompt(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "s.jsonl",
        '{"question": "q?", "answer": "1", "sys": "Be brief."}\n{"question": "r?", "answer": "2", "sys": null}\n',
    )
    items = load_prompts(DatasetConfig(path=path, system_field="sys", thinking="off"))
    assert [i.system for i in items] == [f"{THINKING_OFF}\nBe brief.", THINKING_OFF]
    assert items[0].text == f"{THINKING_OFF}\nBe brief.\nq?\n"  # plain fallback: system \n user \n
    none = load_prompts(DatasetConfig(path=path, system_field="sys", thinking="none"))
    assert [i.system for i in none] == ["Be brief.", None]


def test_chat_template_without_toggle_and_suffix(tokenizer: PreTrainedTokenizerFast) -> None:
    cfg = DatasetConfig(path=GSM8K, limit=3, instruction_suffix="Put the final answer in \\boxed{}.")
    item = load_prompts(cfg, tokenizer)[2]
    assert item.text == "<|user|>What is 2 + 3?\nPut the final answer in \\boxed{}.\n<|assistant|>"
    assert item.question == "What is 2 + 3?"


def test_a_template_that_refuses_a_system_role_gets_the_toggle_in_the_user_turn(
        tokenizer: PreTrainedTokenizerFast, caplog: pytest.LogCaptureFixture) -> None:
    """Mistral-style templates raise on a system message: the toggle line opens the user turn instead
    (with a warning); a template that fails on that too is the row's data error."""
    strict = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, unk_token="[UNK]")
    strict.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}"
    )
    with caplog.at_level("WARNING"):
        items = load_prompts(DatasetConfig(path=GSM8K, thinking="on"), strict)
    assert items[2].text == f"{THINKING_ON}\n\nWhat is 2 + 3?" and "refuses a system turn" in caplog.text
    broken = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, unk_token="[UNK]")
    broken.chat_template = "{{ raise_exception('no template works') }}"
    with pytest.raises(DataError, match="no template works") as exc:
        load_prompts(DatasetConfig(path=GSM8K, thinking="on"), broken)
    assert "row 1" in str(exc.value) and "thinking=none" in str(exc.value)


# ---------------------------------------------------------------------------------------------
# Errors: file, row number, field, what was found, the fix
# ---------------------------------------------------------------------------------------------


def test_row_missing_field_names_file_row_and_fix() -> None:
    path = str(DATA / "malformed_missing_field.jsonl")
    with pytest.raises(DataError) as exc:
        load_prompts(DatasetConfig(path=path))
    msg = str(exc.value)
    assert path in msg and "row 3 (line 3)" in msg and "'question'" in msg and "is missing" in msg
    assert "data.file.prompt_field" in msg and "'prompt'" in msg
    assert "\n" not in msg and exc.value.field == "question"


def test_non_string_prompt_names_row_and_value() -> None:
    path = str(DATA / "malformed_prompt_type.jsonl")
    with pytest.raises(DataError) as exc:
        validate_dataset_file(DatasetConfig(path=path))
    msg = str(exc.value)
    assert path in msg and "row 2 (line 2)" in msg and "non-empty string" in msg and "int 42" in msg


def test_row_numbers_follow_file_lines_past_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "b.jsonl", '{"question": "a", "answer": "1"}\n\n{"question": "", "answer": "2"}\n')
    with pytest.raises(DataError, match=r"row 2 \(line 3\)"):
        load_prompts(DatasetConfig(path=path))


def test_mixed_types_with_blank_lines_still_name_the_row(tmp_path: Path) -> None:
    # datasets' own reader fails on this file without saying where; the diagnosis pass does.
    path = _write(tmp_path, "m.jsonl", '{"question": "a", "answer": "1"}\n\n{"question": 5, "answer": 2}\n')
    with pytest.raises(DataError, match=r"row 2 \(line 3\).*int 5"):
        load_prompts(DatasetConfig(path=path))


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = _write(tmp_path, "arr.jsonl", '["What is 1 + 1?", "2"]\n')
    with pytest.raises(DataError, match=r"row 1 \(line 1\).*expected a JSON object, found list"):
        load_prompts(DatasetConfig(path=path))


def test_invalid_json_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.jsonl", '{"question": "a", "answer": "1"}\n{"question": oops}\n')
    with pytest.raises(DataError, match=r"row 2 \(line 2\).*invalid JSON"):
        load_prompts(DatasetConfig(path=path))


def test_missing_column_lists_available_fields() -> None:
    with pytest.raises(DataError) as exc:
        load_prompts(DatasetConfig(path=MATH, answer_field="solution"))
    msg = str(exc.value)
    assert "no such column" in msg and "'question'" in msg and "row 1" in msg and MATH in msg
    assert "set data.file.prompt_field to one of" in msg and "'problem'" in msg


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("missing.jsonl", None, "does not exist"),
        ("prompts.csv", "question,answer\n", "unsupported file type '.csv'"),
        ("empty.jsonl", "", "no rows"),
        ("broken.parquet", "not parquet", "cannot be read"),
    ],
)
def test_file_level_errors(tmp_path: Path, name: str, text: str | None, pattern: str) -> None:
    path = str(tmp_path / name) if text is None else _write(tmp_path, name, text)
    with pytest.raises(DataError, match=pattern) as exc:
        load_prompts(DatasetConfig(path=path))
    assert path in str(exc.value) and "Fix:" in str(exc.value)


def test_unextractable_answer_and_wrong_answer_type(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"row 1 \(line 1\).*'\\boxed\{\.\.\.\}'.*answer_format=plain"):
        load_prompts(DatasetConfig(path=GSM8K, answer_format="boxed"))
    path = _write(tmp_path, "t.jsonl", '{"question": "a", "answer": true}\n')
    with pytest.raises(DataError, match=r"string or a number.*found bool True"):
        load_prompts(DatasetConfig(path=path))


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "d.jsonl",
        '{"question": "a", "answer": "1", "id": "x"}\n{"question": "b", "answer": "2", "id": "x"}\n',
    )
    with pytest.raises(DataError, match=r"row 2 \(line 2\).*duplicate id 'x', first seen in row 1"):
        load_prompts(DatasetConfig(path=path, id_field="id"))


# ---------------------------------------------------------------------------------------------
# Reference extraction
# ---------------------------------------------------------------------------------------------


def test_extract_reference_gsm8k() -> None:
    assert extract_reference("a\n#### 1,234 ", "gsm8k") == "1234"
    assert extract_reference("no marker", "gsm8k") is None
    assert extract_reference("  x ", "plain") == "x"


# ---------------------------------------------------------------------------------------------
# From the file to the reward
# ---------------------------------------------------------------------------------------------


def _as(fmt: str, tmp_path: Path, source: str) -> str:
    """The rows of JSONL file ``source`` written as ``fmt`` (jsonl: the file itself)."""
    import datasets

    if fmt == "jsonl":
        return source
    rows = datasets.load_dataset("json", data_files=source, split="train")
    out = tmp_path / f"rows.{fmt}"
    if fmt == "json":
        out.write_text(json.dumps(list(rows)))
    elif fmt == "parquet":
        rows.to_parquet(str(out))
    else:
        rows.save_to_disk(str(out))
    return str(out)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "saved"])
@pytest.mark.parametrize("shape", ["gsm8k", "math"])
def test_each_file_shape_reaches_the_math_verifier(tmp_path: Path, fmt: str, shape: str) -> None:
    """Every prompt of the shipped GSM8K and MATH fixtures, in each file format, as the GRPO loop hands
    it to the reward (``reward_inputs``): an answer with the file's reference scores 1, another 0."""
    from rewards import build_reward
    from rlplat.config.schema import RewardConfig
    from rlplat.runtime.scorer import reward_inputs, reward_spec
    from rlplat.types import Sample

    cfg = (DatasetConfig(answer_format="gsm8k") if shape == "gsm8k" else
           DatasetConfig(prompt_field="problem", answer_field="solution", answer_format="boxed"))
    items = load_prompts(replace(cfg, path=_as(fmt, tmp_path, GSM8K if shape == "gsm8k" else MATH)))
    samples = [[Sample((1,), f"<think>worked</think>The answer is \\boxed{{{answer}}}.", (0.0,), 0)
                for answer in (item.reference, "12345")] for item in items]
    outs = build_reward(reward_spec(RewardConfig())).score_batch(reward_inputs(items, samples))
    assert len(items) >= 2 and [o.score for o in outs] == [1.0, 0.0] * len(items)
