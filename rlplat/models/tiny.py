"""Build a tiny Llama and a character-level tokenizer locally, with no hub access.

The result is an ordinary Hugging Face model directory (``config.json``, safetensors weights,
``tokenizer.json`` with a chat template), so vLLM, transformers and DeepSpeed load it exactly as
they would a real checkpoint. This is what lets the default experiment and the tests run offline.
"""

from __future__ import annotations

import string
from pathlib import Path

from rlplat.config.schema import ModelShape

# One token per character keeps the tokenizer trivially correct and the vocabulary tiny.
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \n"

# A minimal chat template: system and user turns, then the assistant turn is opened.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}[S]{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}[U]{{ m['content'] }}\n"
    "{% else %}[A]{{ m['content'] }}</s>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}[A]{% endif %}"
)


def char_vocab() -> dict[str, int]:
    """Token -> id of the character tokenizer: the special tokens, then one id per character."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in ALPHABET:
        vocab.setdefault(ch, len(vocab))
    return vocab


def build_char_tokenizer(out_dir: Path) -> None:
    """Write a character-level ``PreTrainedTokenizerFast`` with a chat template to ``out_dir``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=char_vocab(), unk_token="<unk>"))
    # Split into single characters, keeping every one (whitespace included) as its own token.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))


def build_student(teacher: str | Path, out_dir: str | Path, shape: ModelShape, seed: int = 0) -> Path:
    """A randomly initialised Llama of ``shape`` sharing ``teacher``'s vocabulary and tokenizer
    (a distillation student), written to ``out_dir`` and returned. Idempotent like ``build_tiny_llama``."""
    import torch
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    from rlplat.models.hf import copy_tokenizer

    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    t = AutoConfig.from_pretrained(str(teacher))
    config = LlamaConfig(vocab_size=t.vocab_size, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
                         num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
                         num_key_value_heads=shape.num_kv_heads, max_position_embeddings=shape.max_position_embeddings,
                         pad_token_id=t.pad_token_id, bos_token_id=t.bos_token_id, eos_token_id=t.eos_token_id,
                         tie_word_embeddings=False, torch_dtype="float32")
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(str(out), safe_serialization=True)
    copy_tokenizer(Path(teacher), out)
    return out


def build_tiny_llama(out_dir: str | Path, shape: ModelShape | None = None, seed: int = 0) -> Path:
    """Create a randomly initialised Llama of ``shape`` (weights from ``seed``) plus the character
    tokenizer in ``out_dir`` and return it (``shape`` None: the default ``ModelShape()``).

    Idempotent: an existing directory holding ``config.json`` and weights is left untouched.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = shape or ModelShape()
    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    build_char_tokenizer(out)
    config = LlamaConfig(
        vocab_size=len(char_vocab()),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=shape.max_position_embeddings,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out), safe_serialization=True)
    return out
