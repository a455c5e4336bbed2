"""Hugging Face model directories: the files a stage copies along with the weights it writes."""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "tokenizer.model", "vocab.json", "merges.txt", "generation_config.json")


def copy_tokenizer(src: Path, dst: Path) -> None:
    """Copy the tokenizer (and generation config) of model directory ``src`` into ``dst``, so that
    ``dst`` loads on its own (DeepSpeed's ``save_pretrained`` writes weights and config only)."""
    for name in TOKENIZER_FILES:
        if (src / name).exists() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)
