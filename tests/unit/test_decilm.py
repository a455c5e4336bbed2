"""rlplat.models.decilm: the heterogeneous Llama equals transformers' Llama, round-trips through the
DeciLM format, and refuses what vLLM's DeciLMForCausalLM cannot serve (the vLLM side itself:
tests/integration/test_decilm_vllm.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from rlplat.models.decilm import HeteroLlamaForCausalLM, from_llama, load_decilm, save_decilm
from rlplat.models.decilm_format import (
    AttentionConfig,
    BlockConfig,
    FFNConfig,
    HeteroLlamaConfig,
    ffn_mult_for_width,
    ffn_width,
    parse_block,
    read_decilm_config,
    validate_blocks,
)
from rlplat.models.hf import greedy_decode

FULL = AttentionConfig("full", 2)
NO_ATTN = AttentionConfig("none")
NO_FFN = FFNConfig("none")

# One block without attention, one multi-query (n_heads_in_group 4 of 4 heads), one without FFN, one
# with ffn_mult 1.0 (width 256), one with neither; the first has attention, as vLLM requires.
HETERO = (
    BlockConfig(AttentionConfig("full", 4), FFNConfig("full", ffn_mult=1.0)),
    BlockConfig(NO_ATTN, FFNConfig("full", ffn_mult=5.25)),
    BlockConfig(AttentionConfig("full", 1), NO_FFN),
    BlockConfig(NO_ATTN, NO_FFN),
    BlockConfig(FULL, FFNConfig("full", intermediate_size=384)),
)


def _hetero(blocks: tuple[BlockConfig, ...] = HETERO, seed: int = 0) -> HeteroLlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = HeteroLlamaConfig(vocab_size=100, hidden_size=128, num_attention_heads=4, blocks=blocks,
                            max_position_embeddings=256, eos_token_id=2)
    return HeteroLlamaForCausalLM(cfg).eval()


def _ids(batch: int = 2, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 100, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def hf_llama(tiny_model: str) -> Any:
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(tiny_model).eval()


def test_from_llama_equals_transformers(tiny_model: str, hf_llama: Any) -> None:
    ours = from_llama(tiny_model)
    assert all(b == BlockConfig(FULL, FFNConfig("full", intermediate_size=384)) for b in ours.config.blocks)
    assert len(ours.config.blocks) == 4
    ids = _ids()
    padded = torch.ones_like(ids)
    padded[1, 7:] = 0
    # A packed row: two examples of 5 and 7 tokens, positions restarting (rlplat.algo.packing's layout).
    seg = torch.tensor([0] * 5 + [1] * 7)
    packed = ((seg[:, None] == seg[None, :]) & torch.ones(12, 12, dtype=torch.bool).tril())[None, None].expand(2, 1, 12, 12)
    positions = torch.cat([torch.arange(5), torch.arange(7)]).expand(2, 12)
    with torch.no_grad():
        for kwargs in ({}, {"attention_mask": padded}, {"attention_mask": packed, "position_ids": positions}):
            torch.testing.assert_close(ours(ids, **kwargs).logits, hf_llama(ids, **kwargs).logits, atol=1e-5, rtol=1e-5)
        theirs = hf_llama(ids, output_hidden_states=True).hidden_states
        mine = ours(ids, output_hidden_states=True).hidden_states
    assert mine is not None and len(mine) == len(theirs) == 5
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # From the module as well as from its directory; the weights are copies, not shared.
    again = from_llama(hf_llama)
    assert torch.equal(again.get_parameter("model.layers.0.self_attn.q_proj.weight"),
                       hf_llama.model.layers[0].self_attn.q_proj.weight)
    assert again.model.embed_tokens.weight.data_ptr() != hf_llama.model.embed_tokens.weight.data_ptr()


def test_save_load_round_trip(tiny_model: str, tmp_path: Path) -> None:
    from transformers import AutoConfig

    model = from_llama(tiny_model)
    out = save_decilm(model, tmp_path / "child")
    raw = json.loads((out / "config.json").read_text())
    assert raw["architectures"] == ["DeciLMForCausalLM"] and raw["model_type"] == "nemotron-nas"
    assert raw["num_hidden_layers"] == len(raw["block_configs"]) == 4
    assert raw["block_configs"][0] == {"attention": {"no_op": False, "replace_with_linear": False, "n_heads_in_group": 2},
                                       "ffn": {"no_op": False, "replace_with_linear": False, "intermediate_size": 384}}
    loaded = load_decilm(out)
    assert loaded.config == model.config
    mine, theirs = model.state_dict(), loaded.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    ids = _ids()
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    # What vLLM sees: transformers loads the shipped config class and the blocks read as attributes.
    hf = AutoConfig.from_pretrained(str(out), trust_remote_code=True)
    assert hf.model_type == "nemotron-nas" and hf.block_configs[0].attention.n_heads_in_group == 2
    assert not hasattr(hf.block_configs[0].ffn, "ffn_mult") and hf.block_configs[0].ffn.intermediate_size == 384
    assert hf.to_dict()["block_configs"] == raw["block_configs"]


def test_heterogeneous_model_runs_and_round_trips(tmp_path: Path) -> None:
    model = _hetero()
    keys = set(model.state_dict())
    # Absent sub-blocks have neither weights nor norms, as vLLM builds them.
    assert not any(k.startswith(("model.layers.1.self_attn", "model.layers.1.input_layernorm")) for k in keys)
    assert not any(k.startswith(("model.layers.2.mlp", "model.layers.2.post_attention_layernorm")) for k in keys)
    assert not any(k.startswith("model.layers.3.") for k in keys)

    def shape(name: str) -> tuple[int, ...]:
        return tuple(model.get_parameter(f"model.layers.{name}.weight").shape)

    assert shape("0.self_attn.k_proj") == (32, 128)  # 4 heads in one group: 1 KV head
    assert shape("2.self_attn.k_proj") == (128, 128)  # groups of 1: 4 KV heads
    assert shape("0.mlp.gate_proj") == (ffn_width(128, 1.0), 128) == (256, 128)
    assert shape("1.mlp.gate_proj") == (512, 128)
    assert shape("4.mlp.gate_proj") == (384, 128)
    layers = model.model.layers

    ids = _ids()
    with torch.no_grad():
        logits = model(ids).logits
        assert logits.shape == (2, 12, 100) and torch.isfinite(logits).all()
        # Causal: a later token never changes an earlier position's logits.
        changed = ids.clone()
        changed[:, -1] = (changed[:, -1] + 1) % 100
        torch.testing.assert_close(model(changed).logits[:, :-1], logits[:, :-1], atol=1e-6, rtol=0)
        # Left padding: the padded queries stay finite and the real tokens do not see the padding.
        left = torch.ones_like(ids)
        left[0, :3] = 0
        shifted = model(ids, attention_mask=left, position_ids=(left.cumsum(1) - 1).clamp(min=0)).logits
        assert torch.isfinite(shifted).all()
        torch.testing.assert_close(shifted[0, 3:], model(ids[:1, 3:]).logits[0], atol=1e-5, rtol=1e-5)
        x = torch.randn(1, 4, 128)
        assert layers[3](x, x, x, None) is x  # the empty block is the identity

    out = save_decilm(model, tmp_path / "hetero")
    loaded = load_decilm(out)
    assert loaded.config.blocks == HETERO
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, logits)
    assert greedy_decode(loaded, [5, 6, 7], 4) == greedy_decode(model, [5, 6, 7], 4)


# Computed with vLLM 0.32's vllm.model_executor.models.nemotron_nas._ffn_mult_to_intermediate_size
# (which the integration test also compares live; importing vLLM here would cost ~10 s per run).
VLLM_WIDTHS = [
    (128, 0.5, 256), (128, 1.0, 256), (128, 2.0, 256), (128, 5.25, 512), (128, 6.0, 512), (128, 9.0, 768),
    (4096, 5.25, 14336), (4096, 1.0, 2816), (4096, 0.1, 512), (8192, 1.3, 7168), (8192, 2.625, 14336),
    (8192, 3.28125, 17920), (8192, 4.875, 26624), (8192, 5.25, 28672), (16384, 1.95, 21504),
    (5120, 2.5, 8704), (3072, 2.6666666666666665, 5632), (768, 3.0, 1536),
]


@pytest.mark.parametrize(("hidden", "mult", "width"), VLLM_WIDTHS)
def test_ffn_width_matches_vllm(hidden: int, mult: float, width: int) -> None:
    assert ffn_width(hidden, mult) == width


def test_ffn_mult_for_width() -> None:
    assert ffn_mult_for_width(4096, 14336) == 5.25  # Llama-3.1-8B's FFN
    assert ffn_width(128, ffn_mult_for_width(128, 768) or 0.0) == 768
    assert ffn_mult_for_width(128, 384) is None  # no multiple of 256: kept as intermediate_size
    assert ffn_mult_for_width(128, 0) is None


def _dict_block(attn: dict[str, Any], ffn: dict[str, Any]) -> dict[str, Any]:
    return {"attention": {"no_op": False, "replace_with_linear": False, "n_heads_in_group": 2, **attn},
            "ffn": {"no_op": False, "replace_with_linear": False, "ffn_mult": 1.0, **ffn}}


@pytest.mark.parametrize(("blocks", "message"), [
    ([BlockConfig(AttentionConfig("full", 3), NO_FFN)], "n_heads_in_group"),
    ([BlockConfig(AttentionConfig("full"), NO_FFN)], "n_heads_in_group"),
    ([BlockConfig(AttentionConfig("full", 0), NO_FFN)], "n_heads_in_group"),
    ([BlockConfig(AttentionConfig("none", 2), NO_FFN)], "no n_heads_in_group"),
    ([BlockConfig(AttentionConfig("linear", 2), NO_FFN)], "unknown attention kind"),  # type: ignore[arg-type]
    ([BlockConfig(FULL, FFNConfig("moe", 1.0))], "unknown FFN kind"),  # type: ignore[arg-type]
    ([BlockConfig(FULL, FFNConfig("full"))], "exactly one of"),
    ([BlockConfig(FULL, FFNConfig("full", 1.0, 256))], "exactly one of"),
    ([BlockConfig(FULL, FFNConfig("full", ffn_mult=-1.0))], "ffn_mult"),
    ([BlockConfig(FULL, FFNConfig("full", ffn_mult=0.001))], "width 0"),
    ([BlockConfig(FULL, FFNConfig("none", ffn_mult=1.0))], "takes no ffn_mult"),
    ([BlockConfig(NO_ATTN, FFNConfig("full", 1.0)), BlockConfig(FULL, NO_FFN)], "attention block before"),
    ([BlockConfig(NO_ATTN, NO_FFN)], "no block has attention"),
    ([], "at least one block"),
    ([_dict_block({"replace_with_linear": True}, {})], "replace_with_linear"),
    ([_dict_block({}, {"replace_with_linear": True})], "replace_with_linear"),
    ([_dict_block({"window_length": 128}, {})], "window_length"),
    ([_dict_block({}, {"hidden_act": "relu2"})], "hidden_act"),
    ([_dict_block({"no_op": True}, {})], "no_op but sets"),
    ([_dict_block({"linear_attention": True}, {})], "unknown attention field"),
    ([{"attention": {"no_op": False}}], "exactly 'attention' and 'ffn'"),
])
def test_validate_blocks_refuses(blocks: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_blocks(128, 4, blocks)


def test_validate_blocks_refuses_bad_shapes() -> None:
    block = [BlockConfig(FULL, NO_FFN)]
    with pytest.raises(ValueError, match="multiple of num_heads"):
        validate_blocks(130, 4, block)
    with pytest.raises(ValueError, match="even"):
        validate_blocks(12, 4, block)  # head size 3
    with pytest.raises(ValueError, match="n_heads_in_group"):
        _hetero((BlockConfig(AttentionConfig("full", 8), NO_FFN),))  # the config validates itself


def test_nvidia_block_format_is_read(tmp_path: Path) -> None:
    # The block_configs of NVIDIA's Llama-Nemotron checkpoints carry every field of their dataclasses,
    # the unsupported ones at their neutral values: read them as the blocks they are.
    nvidia_attn = {"n_heads_in_group": 2, "no_op": False, "num_sink_tokens": None, "replace_with_linear": False,
                   "sparsify": None, "unshifted_sink": False, "use_prefill_window_in_sink_attention": False,
                   "window_length": None}
    nvidia_ffn = {"ffn_mult": 5.25, "no_op": False, "replace_with_linear": False, "sparsify": None}
    skipped_attn = {**nvidia_attn, "n_heads_in_group": None, "no_op": True}
    assert parse_block({"attention": nvidia_attn, "ffn": nvidia_ffn}) == BlockConfig(FULL, FFNConfig("full", 5.25))
    assert parse_block({"attention": skipped_attn, "ffn": {**nvidia_ffn, "ffn_mult": None, "no_op": True}}) == \
        BlockConfig(NO_ATTN, NO_FFN)
    model = _hetero()
    out = save_decilm(model, tmp_path / "m")
    raw = json.loads((out / "config.json").read_text())
    raw["block_configs"][0] = {"attention": {**nvidia_attn, "n_heads_in_group": 4}, "ffn": {**nvidia_ffn, "ffn_mult": 1.0}}
    (out / "config.json").write_text(json.dumps(raw))
    assert read_decilm_config(out).blocks == HETERO


@pytest.mark.parametrize(("field", "value", "message"), [
    ("tie_word_embeddings", True, "tie_word_embeddings"),
    ("rope_parameters", {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}, "rope_parameters"),
    ("architectures", ["LlamaForCausalLM"], "architectures"),
    ("num_hidden_layers", 3, "num_hidden_layers"),
])
def test_read_decilm_config_refuses(tmp_path: Path, field: str, value: Any, message: str) -> None:
    out = save_decilm(_hetero(), tmp_path / "m")
    raw = json.loads((out / "config.json").read_text())
    raw[field] = value
    (out / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=message):
        read_decilm_config(out)


def test_bool_mask_required_for_4d() -> None:
    model = _hetero()
    ids = _ids(1, 4)
    with pytest.raises(ValueError, match="must be bool"):
        model(ids, attention_mask=torch.zeros(1, 1, 4, 4))


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    grads = []
    for checkpointing in (False, True):
        model = _hetero().train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(_ids()).logits.logsumexp(-1).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(_hetero().parameters()))
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-6), name


def test_load_causal_lm_picks_the_format(tiny_model: str, tmp_path: Path) -> None:
    from transformers import LlamaForCausalLM

    from rlplat.models.decilm_format import is_decilm
    from rlplat.models.hf import load_causal_lm, save_causal_lm

    child = save_decilm(_hetero(), tmp_path / "child")
    assert is_decilm(child) and not is_decilm(tiny_model) and not is_decilm(tmp_path / "missing")
    loaded = load_causal_lm(child, torch.float64)
    assert isinstance(loaded, HeteroLlamaForCausalLM) and loaded.lm_head.weight.dtype == torch.float64
    assert isinstance(load_causal_lm(tiny_model, torch.float32), LlamaForCausalLM)
    save_causal_lm(loaded, tmp_path / "again")
    assert is_decilm(tmp_path / "again")


def test_preflight_refuses_a_decilm_directory_vllm_cannot_serve(tiny_model: str, tmp_path: Path) -> None:
    """A bad block (here an unknown attention kind) is a config error naming the field, before Ray."""
    from rlplat.config.errors import ConfigError
    from rlplat.config.loader import load
    from rlplat.config.validate import validate
    from rlplat.models.hf import copy_tokenizer
    from rlplat.preflight import preflight

    def check(overrides: list[str]) -> None:
        cfg = load(overrides)[0]
        validate(cfg)
        preflight(cfg)

    child = save_decilm(_hetero(), tmp_path / "child")
    copy_tokenizer(Path(tiny_model), child)
    check([f"model.path={child}"])  # a good child is accepted
    raw = json.loads((child / "config.json").read_text())
    raw["block_configs"][1]["attention"] = {"no_op": False, "replace_with_linear": True}
    (child / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as err:
        check([f"model.path={child}"])
    assert err.value.field == "model.path" and "cannot serve" in str(err.value) and "block" in str(err.value)
