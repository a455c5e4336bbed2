"""Small random checkpoints of the model families users bring, built locally (no hub access).

Each is what a user's download looks like, shrunk: the family's own config class (Llama-3 with
llama3 rope scaling and no pad token; Qwen2 with tied embeddings and qkv biases; Qwen3 with q/k
norms; Mistral; Phi-3 with fused ``qkv_proj``/``gate_up_proj``), a byte-level BPE tokenizer trained
here with ``tokenizers`` on the synthetic task's text, the family's special tokens and chat template
(its own end-of-turn token, its own way of placing the system prompt; Mistral's refuses a system
role), and a ``generation_config.json`` whose ``eos_token_id`` lists every token that ends a turn
(Qwen2's, as its base checkpoints', leaves the template's end of turn out).
The weights are random; what is tested is that every part of rlplat reads the family right.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One family: its special tokens (the tokenizer's BOS, EOS, pad, and the turn markers), which of
# them the generation config lists as EOS, and its chat template.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
PHI3_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}"
)


@dataclass(frozen=True)
class Family:
    """How one family's checkpoint is built."""

    name: str
    specials: tuple[str, ...]  # in id order after the byte-level merges
    bos: str | None
    eos: str  # tokenizer.eos_token
    pad: str | None
    end_of_turn: str  # what the template closes an assistant turn with
    generation_eos: tuple[str, ...]  # generation_config.json's eos_token_id, as tokens
    template: str
    config: Callable[[int, dict[str, int | None]], Any]  # (vocab size, special ids) -> config


def _llama3(vocab: int, ids: dict[str, int | None]) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 128},
                       bos_token_id=ids["<|begin_of_text|>"], eos_token_id=ids["<|end_of_text|>"],
                       pad_token_id=None, tie_word_embeddings=False)


def _qwen2(vocab: int, ids: dict[str, int | None]) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       tie_word_embeddings=True, bos_token_id=None, eos_token_id=ids["<|endoftext|>"],
                       pad_token_id=ids["<|endoftext|>"])


def _qwen3(vocab: int, ids: dict[str, int | None]) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
                       tie_word_embeddings=True, bos_token_id=None, eos_token_id=ids["<|im_end|>"],
                       pad_token_id=ids["<|endoftext|>"])


def _mistral(vocab: int, ids: dict[str, int | None]) -> Any:
    from transformers import MistralConfig

    return MistralConfig(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         sliding_window=None, bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=None,
                         tie_word_embeddings=False)


def _phi3(vocab: int, ids: dict[str, int | None]) -> Any:
    from transformers import Phi3Config

    return Phi3Config(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                      original_max_position_embeddings=512, bos_token_id=ids["<s>"],
                      eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)


FAMILIES = {f.name: f for f in (
    Family("llama3", ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
           "<|begin_of_text|>", "<|end_of_text|>", None, "<|eot_id|>", ("<|end_of_text|>", "<|eot_id|>"),
           LLAMA3_TEMPLATE, _llama3),
    # As Qwen2.5's base checkpoints: generation_config lists <|endoftext|> alone, not the turn's end.
    Family("qwen2", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"), None, "<|endoftext|>", "<|endoftext|>",
           "<|im_end|>", ("<|endoftext|>",), CHATML_TEMPLATE, _qwen2),
    Family("qwen3", ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"), None, "<|im_end|>",
           "<|endoftext|>", "<|im_end|>", ("<|im_end|>", "<|endoftext|>"), CHATML_TEMPLATE, _qwen3),
    Family("mistral", ("<unk>", "<s>", "</s>"), "<s>", "</s>", None, "</s>", ("</s>",), MISTRAL_TEMPLATE, _mistral),
    Family("phi3", ("<unk>", "<s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), "<s>",
           "<|endoftext|>", "<|endoftext|>", "<|end|>", ("<|end|>", "<|endoftext|>"), PHI3_TEMPLATE, _phi3),
)}

# Text the tokenizers learn their merges from: the synthetic task's questions, the toggle's system
# lines and the shapes of worked answers.
CORPUS = [f"What is {a} + {b}? detailed thinking on detailed thinking off <think>{a}+{b}={a + b}</think>{a + b}"
          for a in range(0, 200, 3) for b in range(0, 200, 7)]


def build_family(name: str, out: Path, seed: int = 0) -> Path:
    """A random checkpoint of family ``name`` with its tokenizer, template and generation config, in
    ``out`` (idempotent)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    if (out / "config.json").is_file():
        return out
    family = FAMILIES[name]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=448, special_tokens=list(family.specials),
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=family.bos, eos_token=family.eos,
                                   pad_token=family.pad, unk_token="<unk>" if "<unk>" in family.specials else None)
    fast.chat_template = family.template
    fast.save_pretrained(str(out))
    ids = {t: fast.convert_tokens_to_ids(t) for t in family.specials}
    config = family.config(len(fast), ids)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    model.save_pretrained(str(out), safe_serialization=True)
    GenerationConfig(bos_token_id=config.bos_token_id, pad_token_id=config.pad_token_id,
                     eos_token_id=[ids[t] for t in family.generation_eos]).save_pretrained(str(out))
    return out
