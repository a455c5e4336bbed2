"""Prompt rendering: the reasoning toggle's system prompt and the chat template.

Llama-Nemotron switches reasoning with the system prompt: "detailed thinking on" or "detailed
thinking off" (LN §3). Here the toggle is a per-dataset setting (``ThinkingMode``):

* ``"on"`` / ``"off"``: the toggle line is the system prompt. When the row carries its own system
  prompt, the toggle line comes first and the row's prompt follows on the next line, because the
  toggle is what the SFT data trained the model to read at the start of the system turn.
* ``"none"``: no toggle line; the row's own system prompt (if any) is used as is, and when there is
  none no system message is sent, so the tokenizer's template applies its own default (the
  Nemotron template defaults to "detailed thinking on").

Rendering uses the tokenizer's chat template when it has one; otherwise a plain fallback that
joins the message contents: ``system + "\\n" + user + "\\n"`` (or ``user + "\\n"`` with no system).
A template that refuses a system turn (Mistral's) gets the system text, the toggle line first, at
the start of the first user turn, with a warning once per tokenizer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # transformers is heavy; only type checkers need it here.
    from transformers import PreTrainedTokenizerBase

ThinkingMode = Literal["on", "off", "none"]
THINKING_ON = "detailed thinking on"
THINKING_OFF = "detailed thinking off"
_TOGGLE_LINES: dict[str, str | None] = {"on": THINKING_ON, "off": THINKING_OFF, "none": None}

Message = dict[str, str]


def thinking_modes() -> tuple[str, ...]:
    """Valid values of ``ThinkingMode`` (for config validation)."""
    return tuple(_TOGGLE_LINES)


def system_prompt(thinking: ThinkingMode, row_system: str | None = None) -> str | None:
    """The system prompt for one row: the toggle line, then the row's own system prompt.

    Args:
        thinking: ``"on"``, ``"off"`` or ``"none"`` (see the module docstring).
        row_system: The row's own system prompt; None or "" when it has none.

    Returns:
        The system prompt, or None when neither a toggle nor a row prompt applies.

    Raises:
        ValueError: unknown ``thinking`` value.
    """
    if thinking not in _TOGGLE_LINES:
        raise ValueError(f"unknown thinking mode {thinking!r}; choose one of {thinking_modes()}")
    parts = [p for p in (_TOGGLE_LINES[thinking], row_system) if p]
    return "\n".join(parts) if parts else None


def build_messages(system: str | None, user: str) -> list[Message]:
    """Chat messages for a single-turn prompt (no system message when ``system`` is None)."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    return messages + [{"role": "user", "content": user}]


def has_chat_template(tokenizer: PreTrainedTokenizerBase | None) -> bool:
    """Whether ``tokenizer`` carries a chat template."""
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def render_prompt(messages: list[Message], tokenizer: PreTrainedTokenizerBase | None) -> str:
    """The text fed to the model: chat template with a generation prompt, or the plain fallback.

    Args:
        messages: As built by :func:`build_messages`.
        tokenizer: A Hugging Face tokenizer, or None for the plain fallback.

    Returns:
        The prompt string (not tokenised).

    Raises:
        Whatever the template raises for these messages, and with the system text moved into the
        first user turn when it refused a system role; callers turn it into a configuration error.
    """
    if has_chat_template(tokenizer):
        assert tokenizer is not None
        try:
            return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        except Exception:
            if not messages or messages[0]["role"] != "system" or len(messages) < 2:
                raise
        # A template that refuses a system turn (Mistral's, Gemma's): the system text opens the
        # first user turn instead.
        text = tokenizer.apply_chat_template(system_in_first_turn(messages), tokenize=False, add_generation_prompt=True)
        _warn_once(tokenizer)
        return str(text)
    return "".join(m["content"] + "\n" for m in messages)


def system_in_first_turn(messages: list[Message]) -> list[Message]:
    """``messages`` with a leading system message moved into the first user turn: its text, a blank
    line, then the user's (what Mistral's own instructions do for a system prompt)."""
    system, first, *rest = messages
    return [{"role": first["role"], "content": f"{system['content']}\n\n{first['content']}"}, *rest]


_WARNED: set[str] = set()


def _warn_once(tokenizer: PreTrainedTokenizerBase) -> None:
    """Say once per tokenizer and process that the system turn was folded into the user's."""
    name = str(getattr(tokenizer, "name_or_path", "")) or "this tokenizer"
    if name not in _WARNED:
        _WARNED.add(name)
        logging.getLogger(__name__).warning(
            "the chat template of %s refuses a system turn: the system prompt (the reasoning toggle's line) "
            "opens the first user turn instead", name)


# A stand-in answer no template alters, to find what a template writes after an assistant turn.
_ANSWER_MARK = "rlplat7answer7mark"


def end_of_turn(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The token that ends the model's turn: the special token the chat template writes right after
    an assistant message (``<|im_end|>``, ``<|eot_id|>``, ``<|end|>``, ``</s>``), else the
    tokenizer's EOS (no template, or one that closes the turn with no special token).

    Models of several families are trained to end a turn with a token that is not
    ``tokenizer.eos_token`` (Qwen2 base: ``<|endoftext|>``, its turns end ``<|im_end|>``;
    Llama-3: ``<|end_of_text|>`` and ``<|eot_id|>``): SFT targets end with this token, and
    generation stops at it (``stop_token_ids``).
    """
    if has_chat_template(tokenizer):
        messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": _ANSWER_MARK}]
        try:
            text = str(tokenizer.apply_chat_template(messages, tokenize=False))
        except Exception:  # noqa: BLE001 - a template that cannot render a turn tells us nothing
            text = ""
        suffix = text.rpartition(_ANSWER_MARK)[2].lstrip(" ")
        specials = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
        for token in sorted(specials | set(tokenizer.all_special_tokens), key=len, reverse=True):
            if suffix.startswith(token):
                return token
    return tokenizer.eos_token


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, generation_eos: int | list[int] | None) -> tuple[int, ...]:
    """Where generation stops: the EOS ids of the model's ``generation_config.json``
    (``generation_eos``; a list for several families), the tokenizer's EOS and the end of turn
    (``end_of_turn``), without repeats, in that order."""
    ids = [generation_eos] if isinstance(generation_eos, int) else list(generation_eos or [])
    for token in (tokenizer.eos_token, end_of_turn(tokenizer)):
        if token is not None:
            ids.append(int(tokenizer.convert_tokens_to_ids(token)))
    return tuple(dict.fromkeys(ids))


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[int, ...]:
    """Token ids of ``text`` as the model sees it: no special tokens added (templates and callers
    place BOS/EOS themselves)."""
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
