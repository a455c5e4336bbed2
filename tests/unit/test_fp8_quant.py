"""FP8 (e4m3) quantization of the sync's weights: error bounds, edge cases, payload bytes."""

from __future__ import annotations

import pytest
import torch

from rlplat.sync.buckets import pack, plan_buckets, unpack
from rlplat.sync.fp8 import (
    E4M3_MAX,
    FP8_DTYPE,
    SCALE_SUFFIX,
    dequantize,
    dequantized_items,
    export_metas,
    fp8_eligible,
    quantize,
    quantized_items,
)

SHAPES = [(64, 48), (300, 200), (1, 7)]


def _bound(x: torch.Tensor, scale: torch.Tensor, block: int | None) -> torch.Tensor:
    """Half an e4m3 ulp (3 mantissa bits) of each value, or half the subnormal step below normals."""
    s = scale if block is None else scale.repeat_interleave(block, 0).repeat_interleave(block, 1)[:x.shape[0], :x.shape[1]]
    return torch.maximum(x.abs() * 2.0**-4, s * 2.0**-10) * (1 + 1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("block", [None, 16, 128])
@pytest.mark.parametrize("magnitude", [1e-30, 1e-3, 1.0, 1e4, 1e30])
def test_round_trip_is_within_half_an_ulp(shape: tuple[int, int], block: int | None, magnitude: float) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape) * magnitude
    q, scale = quantize(x, block)
    assert q.dtype == FP8_DTYPE and q.shape == x.shape and scale.dtype == torch.float32
    back = dequantize(q, scale, torch.float32, block)
    assert torch.isfinite(back).all()
    assert ((back - x).abs() <= _bound(x, scale, block)).all()
    assert q.float().abs().max() <= E4M3_MAX


@pytest.mark.parametrize("block", [None, 8])
def test_zero_and_denormal_tensors_give_no_nan(block: int | None) -> None:
    for x in (torch.zeros(16, 16), torch.full((16, 16), 1e-42), torch.zeros(0, 16) if block is None else torch.zeros(8, 8)):
        q, scale = quantize(x, block)
        back = dequantize(q, scale, torch.float32, block)
        assert torch.isfinite(scale).all() and (scale > 0).all() and torch.isfinite(back).all()
        assert torch.allclose(back, x, atol=1e-40)


def test_block_scales_need_two_dimensions() -> None:
    with pytest.raises(ValueError, match="2-D"):
        quantize(torch.ones(4), 2)


def test_only_linear_weights_outside_embeddings_and_head_are_fp8() -> None:
    assert fp8_eligible("model.layers.0.mlp.up_proj.weight", (64, 32))
    assert not fp8_eligible("model.embed_tokens.weight", (100, 32))
    assert not fp8_eligible("lm_head.weight", (100, 32))
    assert not fp8_eligible("model.layers.0.input_layernorm.weight", (32,))
    assert not fp8_eligible("model.layers.0.mlp.up_proj.bias", (64,))


def test_the_payload_round_trips_through_buckets_with_exact_bytes() -> None:
    torch.manual_seed(0)
    named = [("model.embed_tokens.weight", torch.randn(100, 32)), ("model.layers.0.mlp.up_proj.weight", torch.randn(64, 32)),
             ("model.norm.weight", torch.randn(32))]
    items = dict(quantized_items(named))
    metas = export_metas([(n, t.dtype, tuple(t.shape)) for n, t in named], fp8=True)
    assert [m[0] for m in metas] == list(items)  # the metas describe exactly what is sent, in order
    specs = plan_buckets(metas, 1 << 20)
    payload = sum(e.nbytes for s in specs for e in s.entries)
    assert payload == 100 * 32 * 4 + 4 + 64 * 32 * 1 + 32 * 4  # FP8 weights: 1 byte a value, scale 4
    full = sum(e.nbytes for s in plan_buckets(export_metas([(n, t.dtype, tuple(t.shape)) for n, t in named], False),
                                              1 << 20) for e in s.entries)
    assert full - payload == 64 * 32 * 3 - 4
    received = [kv for s in specs for kv in unpack(s, pack(s, items))]
    back = dict(dequantized_items(received, torch.float32))
    assert list(back) == [n for n, _ in named] and SCALE_SUFFIX not in "".join(back)
    assert torch.equal(back["model.embed_tokens.weight"], named[0][1])
    up = named[1][1]
    assert not torch.equal(back["model.layers.0.mlp.up_proj.weight"], up)  # FP8-rounded ...
    assert torch.allclose(back["model.layers.0.mlp.up_proj.weight"], up, rtol=2.0**-4, atol=1e-3)  # ... closely


def test_a_weight_without_its_scale_is_an_error() -> None:
    q, _ = quantize(torch.ones(4, 4))
    with pytest.raises(ValueError, match="without its scale"):
        list(dequantized_items([("w.weight", q)], torch.float32))


def _layer(seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """One decoder layer's linear weights in state-dict order, each projection with its own range."""
    torch.manual_seed(seed)
    names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
             "mlp.up_proj", "mlp.down_proj")
    return [(f"model.layers.0.{n}.weight", torch.randn(16, 32) * (i + 1)) for i, n in enumerate(names)]


def test_a_fused_group_shares_one_scale_as_vllm_quantizes_the_fused_layer() -> None:
    """vLLM serves q/k/v as one qkv_proj and gate/up as one gate_up_proj, each quantized with one
    scale: the learner gives each group its largest magnitude's scale, so the FP8 values it sends
    are the fused layer's own and come back unchanged when vLLM quantizes that layer again."""
    layer = _layer()
    items = dict(quantized_items(layer))
    scale = {n.removesuffix(SCALE_SUFFIX).split(".")[-2]: float(t) for n, t in items.items() if n.endswith(SCALE_SUFFIX)}
    amax = {n.split(".")[-2]: float(t.abs().max()) for n, t in layer}
    assert scale["q_proj"] == scale["k_proj"] == scale["v_proj"] == pytest.approx(max(amax[p] for p in ("q_proj", "k_proj", "v_proj")) / 448)
    assert scale["gate_proj"] == scale["up_proj"] == pytest.approx(max(amax["gate_proj"], amax["up_proj"]) / 448)
    assert scale["o_proj"] == pytest.approx(amax["o_proj"] / 448) != scale["q_proj"]
    back = dict(dequantized_items(list(items.items()), torch.float32))
    qkv = torch.cat([back[f"model.layers.0.self_attn.{p}.weight"] for p in ("q_proj", "k_proj", "v_proj")])
    q, s = quantize(torch.cat([t for _, t in layer[:3]]))  # vLLM's online FP8 of the fused tensor
    assert torch.equal(qkv, dequantize(q, s, torch.float32))
    again, s2 = quantize(qkv)  # re-quantizing what arrived changes nothing
    assert torch.equal(dequantize(again, s2, torch.float32), qkv)


def test_buckets_keep_a_fused_group_together() -> None:
    from rlplat.sync.fp8 import fused_group

    layer = _layer()
    metas = export_metas([(n, t.dtype, tuple(t.shape)) for n, t in layer], fp8=True)
    specs = plan_buckets(metas, 600, together=fused_group)  # smaller than one group's payload
    buckets = [{e.name.removesuffix(SCALE_SUFFIX).split(".")[-2] for e in s.entries} for s in specs]
    for group in ({"q_proj", "k_proj", "v_proj"}, {"gate_proj", "up_proj"}):
        assert [b for b in buckets if b & group] == [b for b in buckets if group <= b], group  # never split
    assert len(plan_buckets(metas, 600)) > len(specs)  # without the key, the groups are split
