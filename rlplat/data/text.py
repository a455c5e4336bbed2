"""Raw text for continued pretraining and distillation: one local file, one text column.

A ``.jsonl``, ``.json`` or ``.parquet`` file read with ``datasets`` like every other data file
(``rlplat.data.datasets``); each row's ``field`` must be a non-empty string, else the file and row
are named before any worker starts. A text becomes a train sequence whose loss covers every token
after the tokenizer's BOS (or after the first token, without one).
"""

from __future__ import annotations

from typing import Any

from rlplat.config.schema import DatasetConfig
from rlplat.data.chat import encode
from rlplat.data.datasets import DataError, read_rows, row_error
from rlplat.types import TrainSequence


def read_texts(path: str, field: str) -> list[str]:
    """The ``field`` of every row of ``path``; raises ``DataError`` naming the first bad row."""
    cfg = DatasetConfig(path=path, prompt_field=field, answer_field=field)
    out = []
    for i, row in enumerate(read_rows(cfg)):
        text = row.get(field)
        if not isinstance(text, str) or not text.strip():
            raise row_error(cfg, i, field, "must be a non-empty string", "fill in or drop that row")
        out.append(text)
    return out


def check_text_file(path: str, field: str, eval_rows: int) -> int:
    """Preflight: validate the whole file, leaving rows to train on after ``eval_rows``; returns
    its row count."""
    n = len(read_texts(path, field))
    if n <= eval_rows:
        raise DataError(path, f"the file has {n} rows, and distill.eval_rows={eval_rows} holds them all out",
                        "use a larger file or a smaller distill.eval_rows")
    return n


def text_sequences(texts: list[str], tokenizer: Any, max_tokens: int) -> list[TrainSequence]:
    """Each text as a sequence of at most ``max_tokens`` tokens (BOS first, when the tokenizer has
    one), the loss on all but the first."""
    bos = () if tokenizer.bos_token_id is None else (tokenizer.bos_token_id,)
    out = []
    for text in texts:
        ids = (bos + encode(tokenizer, text))[:max_tokens]
        if len(ids) >= 2:
            out.append(TrainSequence(ids[:1], ids[1:], (), 0.0))
    return out
