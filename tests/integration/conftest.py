"""Fixtures of the integration tests: one uninterrupted reference run shared by the session, and a
heterogeneous (DeciLM) child of the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from launch_helpers import launch
from rlplat.models.decilm import HeteroLlamaForCausalLM, save_decilm
from rlplat.models.decilm_format import AttentionConfig, BlockConfig, FFNConfig, HeteroLlamaConfig
from rlplat.models.hf import copy_tokenizer

# Every kind of block vLLM's DeciLM builds: GQA with 2, 1 and 4 KV heads (hidden 128, 4 heads: head
# size 32, one of vLLM's CPU attention sizes), no attention, no FFN, both absent, ffn_mult widths and
# an exact intermediate_size.
DECILM_BLOCKS = (
    BlockConfig(AttentionConfig("full", 2), FFNConfig("full", ffn_mult=1.0)),
    BlockConfig(AttentionConfig("none"), FFNConfig("full", ffn_mult=5.25)),
    BlockConfig(AttentionConfig("full", 4), FFNConfig("none")),
    BlockConfig(AttentionConfig("none"), FFNConfig("none")),
    BlockConfig(AttentionConfig("full", 1), FFNConfig("full", intermediate_size=384)),
)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FAST config run to completion (4 steps, checkpoints at 2 and 4)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    rc, out = launch(run_dir)
    assert rc == 0, out[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def decilm_child(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HeteroLlamaForCausalLM]:
    """A randomly initialised heterogeneous child (``DECILM_BLOCKS``) with the tiny Llama's vocabulary
    and tokenizer, saved as DeciLM; and the module itself (in eval mode)."""
    parent = json.loads((Path(tiny_model) / "config.json").read_text())
    config = HeteroLlamaConfig(vocab_size=parent["vocab_size"], hidden_size=parent["hidden_size"],
                               num_attention_heads=parent["num_attention_heads"], blocks=DECILM_BLOCKS,
                               max_position_embeddings=parent["max_position_embeddings"],
                               pad_token_id=parent["pad_token_id"], bos_token_id=parent["bos_token_id"],
                               eos_token_id=parent["eos_token_id"])
    torch.manual_seed(0)
    model = HeteroLlamaForCausalLM(config).eval()
    out = save_decilm(model, tmp_path_factory.mktemp("decilm") / "child")
    copy_tokenizer(Path(tiny_model), out)
    return out, model
