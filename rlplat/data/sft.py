"""Supervised fine-tuning data with the reasoning toggle (LN §4): read, validate, render.

One local file (``.jsonl``, ``.json`` or ``.parquet``, read with ``datasets`` like the prompt
datasets) in the shape of the public Llama-Nemotron post-training dataset: ``input`` (a string, or a
list of ``{role, content}`` messages), ``output`` (the response), ``reasoning`` ("on" or "off"),
optionally ``system_prompt``; other columns (``category``, ``license``, ...) are ignored. The toggle
becomes the system prompt ("detailed thinking on/off", ``rlplat.data.chat``). An "on" response holds
exactly one ``<think>...</think>`` block before its answer, an "off" response none; a row that breaks
this, or any other rule, is reported with the file and row number before any worker starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rlplat.config.schema import DatasetConfig
from rlplat.data.chat import Message, encode, end_of_turn, render_prompt, system_prompt
from rlplat.data.datasets import DataError, read_rows, row_error
from rlplat.types import TrainSequence

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Toggle = Literal["on", "off"]
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class SFTExample:
    """One validated row: the conversation before the response, the response, its mode."""

    messages: tuple[tuple[str, str], ...]  # (role, content), without the toggle's system message
    output: str
    reasoning: Toggle
    system: str | None


def think_blocks_ok(text: str, reasoning: Toggle) -> bool:
    """Whether ``text`` follows its mode: "on", exactly one non-empty think block followed by an
    answer and nothing before it; "off", no think tag at all."""
    if reasoning == "off":
        return "<think>" not in text and "</think>" not in text
    blocks = _THINK.findall(text)
    if len(blocks) != 1 or text.count("<think>") != 1 or text.count("</think>") != 1:
        return False
    before, after = text.split("<think>", 1)[0], text.split("</think>", 1)[1]
    return not before.strip() and bool(blocks[0].strip()) and bool(after.strip())


def read_sft_examples(path: str) -> list[SFTExample]:
    """Every row of ``path`` as an ``SFTExample``; raises ``DataError`` naming the first bad row."""
    cfg = DatasetConfig(path=path, prompt_field="input", answer_field="output")
    return [_example(cfg, row, i) for i, row in enumerate(read_rows(cfg))]


def _example(cfg: DatasetConfig, row: dict[str, Any], index: int) -> SFTExample:
    reasoning = row.get("reasoning")
    if reasoning not in ("on", "off"):
        raise row_error(cfg, index, "reasoning", f"must be 'on' or 'off', found {reasoning!r}",
                        "set the row's reasoning mode")
    output = row.get("output")
    if not isinstance(output, str) or not output.strip():
        raise row_error(cfg, index, "output", "must be a non-empty string", "fill in or drop that row")
    if not think_blocks_ok(output, reasoning):
        want = "exactly one non-empty <think>...</think> block first, then the answer" if reasoning == "on" \
            else "no <think> block"
        raise row_error(cfg, index, "output", f"a reasoning={reasoning} response needs {want}",
                        "fix the response or its reasoning flag")
    system = row.get("system_prompt") or None
    if system is not None and not isinstance(system, str):
        raise row_error(cfg, index, "system_prompt", "must be a string", "fix or drop the field")
    return SFTExample(_messages(cfg, row.get("input"), index), output, reasoning, system)


def _messages(cfg: DatasetConfig, value: Any, index: int) -> tuple[tuple[str, str], ...]:
    if isinstance(value, str) and value.strip():
        return (("user", value),)
    if isinstance(value, list) and value and all(
            isinstance(m, dict) and m.get("role") in _ROLES and isinstance(m.get("content"), str) for m in value):
        if value[-1]["role"] != "user":
            raise row_error(cfg, index, "input", "the last message must be the user's",
                            "end the conversation with the user turn the output answers")
        return tuple((m["role"], m["content"]) for m in value)
    raise row_error(cfg, index, "input", "must be a non-empty string or a list of {role, content} messages "
                    f"(roles {', '.join(_ROLES)})", "fix or drop that row")


def render_sft_prompt(ex: SFTExample, tokenizer: PreTrainedTokenizerBase) -> str:
    """The example's prompt as the model sees it: the toggle, then the row's system prompt, then
    the conversation, in the chat template."""
    own = [(r, c) for r, c in ex.messages if r == "system"]
    system = system_prompt(ex.reasoning, "\n".join(c for _, c in own) or ex.system)
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    messages += [{"role": r, "content": c} for r, c in ex.messages if r != "system"]
    return render_prompt(messages, tokenizer)


def to_train_sequences(examples: Sequence[SFTExample], tokenizer: PreTrainedTokenizerBase) -> list[TrainSequence]:
    """The examples as supervised sequences: each rendered prompt, and its response closed by the
    token that ends the model's turn (``end_of_turn``: the template's, else EOS; found once for
    all of them), on which the loss falls."""
    turn_end = end_of_turn(tokenizer) or ""
    return [TrainSequence(encode(tokenizer, render_sft_prompt(ex, tokenizer)), encode(tokenizer, ex.output + turn_end),
                          (), 0.0) for ex in examples]


def final_answer(text: str) -> str:
    """What follows the think block (the whole text when there is none), stripped."""
    return text.rsplit("</think>", 1)[-1].strip()


def check_sft_file(path: str, eval_rows: int = 0) -> int:
    """Preflight: read and validate the whole file, leaving rows to train on after ``eval_rows``
    held-out ones; returns its row count (``DataError`` if bad)."""
    examples = read_sft_examples(path)
    if len(examples) <= eval_rows:
        raise DataError(path, f"the file has {len(examples)} rows, and sft.eval_rows={eval_rows} holds them all "
                        "out", "use a larger file or a smaller sft.eval_rows")
    return len(examples)
