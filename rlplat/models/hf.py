"""Model directories: load and save a policy whatever its format, and the files a stage copies
along with the weights it writes.

Two formats are served: a transformers model (any ``AutoModelForCausalLM``), and the DeciLM format
of a heterogeneous child (``architectures: ["DeciLMForCausalLM"]``, ``rlplat.models.decilm``), which
rlplat computes with its own module (transformers has no class for it) and vLLM serves natively.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlplat.models.decilm import HeteroLlamaForCausalLM, load_decilm, save_decilm
from rlplat.models.decilm_format import is_decilm, read_decilm_config

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model", "vocab.json", "merges.txt", "generation_config.json")


def copy_tokenizer(src: Path, dst: Path) -> None:
    """Copy the tokenizer (and generation config) of model directory ``src`` into ``dst``, so that
    ``dst`` loads on its own (DeepSpeed's ``save_pretrained`` writes weights and config only)."""
    for name in TOKENIZER_FILES:
        if (src / name).exists() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)


def load_causal_lm(path: str | Path, dtype: torch.dtype) -> Any:
    """The causal LM of model directory ``path`` in ``dtype``, on CPU: rlplat's
    ``HeteroLlamaForCausalLM`` for a DeciLM directory, transformers' auto class otherwise. Both take
    ``input_ids``, ``attention_mask``, ``position_ids``, ``output_hidden_states`` and return
    ``.logits`` (and ``.hidden_states``), and have ``config.pad_token_id`` and
    ``gradient_checkpointing_enable()``: typed ``Any`` because the two share no base class."""
    if is_decilm(path):
        return load_decilm(path).to(dtype)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)


def import_model_code(path: str | Path) -> None:
    """Import the code of the model of directory ``path`` (its transformers class; rlplat's DeciLM
    module is imported already), which transformers otherwise imports while building it: for a
    caller measuring what building the model costs, without the import."""
    if not is_decilm(path):
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

        MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(str(path)))]  # the lookup imports it


def causal_lm_from_config(path: str | Path, dtype: torch.dtype) -> Any:
    """The causal LM of model directory ``path`` built from its config alone, its weights neither
    read nor initialised (for a caller that fills them in itself: ZeRO-3's sharded start,
    ``rlplat.learner.zero3``, whose partitioned parameters transformers' initialisers cannot index).
    ``dtype`` applies to a transformers model; a DeciLM module is built in the default dtype, which
    the caller's ``zero.Init`` context sets."""
    if is_decilm(path):
        return HeteroLlamaForCausalLM(read_decilm_config(Path(path)))
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(path)), dtype=dtype)
    model.tie_weights()  # no_init_weights skips the tying too (a tied head stays one parameter)
    if (Path(path) / "generation_config.json").is_file():
        # As from_pretrained: its EOS list is what a saved model must carry on (save_pretrained writes it).
        model.generation_config = GenerationConfig.from_pretrained(str(path))
    return model


def save_causal_lm(model: nn.Module, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``model`` (as ``load_causal_lm`` returns it) into ``directory`` in its own format, with
    its own weights or ``state_dict`` (a sharded model's, gathered)."""
    if isinstance(model, HeteroLlamaForCausalLM):
        save_decilm(model, directory, state_dict)
    else:
        model.save_pretrained(str(directory), state_dict=state_dict, safe_serialization=True)  # type: ignore[operator]


@torch.no_grad()
def greedy_decode(model: nn.Module, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
    """The ``max_new_tokens`` tokens argmax decoding appends to ``prompt_ids`` (any causal LM whose
    forward returns ``.logits``: a transformers model or rlplat's DeciLM module). No early stop and
    no suppression of EOS ids (``generate(min_new_tokens=...)`` would pick the runner-up where the
    model's argmax ends its turn, unlike an engine's ``ignore_eos``); each step recomputes the whole
    sequence: a reference for exactness checks, not a server."""
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
    for _ in range(max_new_tokens):
        nxt = model(ids).logits[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids[0, len(prompt_ids):].tolist()
