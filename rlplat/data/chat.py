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
"""

from __future__ import annotations

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
        Whatever the template raises (for example a jinja ``TemplateError`` when the template does
        not accept a system role); callers turn it into a configuration error.
    """
    if has_chat_template(tokenizer):
        assert tokenizer is not None
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(text)
    return "".join(m["content"] + "\n" for m in messages)


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[int, ...]:
    """Token ids of ``text`` as the model sees it: no special tokens added (templates and callers
    place BOS/EOS themselves)."""
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
