"""FP8 (e4m3) quantization of the sync (``rlplat.sync.fp8``) on CUDA against the same code on CPU.

The CPU suite checks the rule (tests/unit/test_fp8_quant.py); here the same functions run on CUDA
tensors and must give the CPU's results bit for bit: the e4m3 bytes, the float32 scales, and the
dequantized values. A learner quantizes on its device, and the CPU emulation of an FP8 engine is
only faithful if the two agree. Fused groups (q/k/v, gate/up) share one scale on CUDA too, and
quantizing a fused tensor again, as vLLM's online FP8 does with ``qkv_proj``, gives back the values
sent.
"""

from __future__ import annotations

import pytest
import torch

from rlplat.models.hf import load_causal_lm
from rlplat.sync.fp8 import (
    E4M3_MAX,
    FP8_DTYPE,
    SCALE_SUFFIX,
    dequantize,
    dequantized_items,
    fused_group,
    quantize,
    quantized_items,
)

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of ``t`` on the host: compared with ``torch.equal``, equal only when bit for
    bit equal (float8 tensors have no comparison kernels of their own, and NaN would differ)."""
    return t.detach().contiguous().flatten().view(torch.uint8).cpu()


def _cases() -> list[tuple[str, torch.Tensor]]:
    """Tensors that reach every branch of the rounding: normal values of many magnitudes, values
    that round to e4m3 subnormals and to zero, the largest magnitude exactly (it maps to 448), an
    all-zero tensor (scale 1), float32 denormals (the scale's lower clamp), and bf16 input."""
    gen = torch.Generator().manual_seed(0)
    normal = torch.randn(300, 200, generator=gen)
    wide = normal * torch.logspace(-6, 6, 200).unsqueeze(0)  # 12 decades in one tensor: subnormal e4m3
    return [
        ("normal", normal),
        ("wide range", wide),
        ("huge", normal * 1e30),
        ("tiny", normal * 1e-30),
        ("regular grid", torch.arange(-1024, 1024, dtype=torch.float32).reshape(32, 64) / 64),
        ("zeros", torch.zeros(64, 48)),
        ("float32 denormals", torch.full((16, 16), 1e-42)),
        ("bf16", normal.to(torch.bfloat16)),
        ("odd shape", torch.randn(1, 7, generator=gen)),
    ]


@pytest.mark.parametrize("block", [None, 16, 128], ids=["per-tensor", "block16", "block128"])
def test_quantize_on_cuda_is_bit_identical_to_cpu(block: int | None) -> None:
    for name, x in _cases():
        if block is not None and x.dim() != 2:
            continue
        q_cpu, s_cpu = quantize(x, block)
        q_gpu, s_gpu = quantize(x.to(CUDA), block)
        assert q_gpu.is_cuda and q_gpu.dtype == FP8_DTYPE and s_gpu.dtype == torch.float32, name
        assert torch.equal(_bits(q_gpu), _bits(q_cpu)), f"{name}: e4m3 values differ"
        assert torch.equal(_bits(s_gpu), _bits(s_cpu)), f"{name}: scales differ"
        assert q_gpu.float().abs().max() <= E4M3_MAX, name
        for dtype in (torch.float32, torch.bfloat16):
            back_gpu, back_cpu = dequantize(q_gpu, s_gpu, dtype, block), dequantize(q_cpu, s_cpu, dtype, block)
            assert torch.equal(_bits(back_gpu), _bits(back_cpu)), f"{name}: dequantized {dtype} differs"
            assert torch.isfinite(back_gpu).all(), name


def _policy_weights(path: str) -> list[tuple[str, torch.Tensor]]:
    """A Llama's parameters in bf16, in state-dict order: what a learner hands ``quantized_items``."""
    model = load_causal_lm(path, torch.bfloat16)
    return [(n, p.detach()) for n, p in model.named_parameters()]


def test_a_policy_s_fp8_payload_on_cuda_is_bit_identical_to_cpu(gpu_model: str) -> None:
    """The whole sync payload of a bf16 Llama: same entries in the same order, same bytes, fused
    groups included (their shared scale is a maximum over several tensors, on the device)."""
    named = _policy_weights(gpu_model)
    on_cpu = list(quantized_items(named))
    on_gpu = list(quantized_items([(n, t.to(CUDA)) for n, t in named]))
    assert [n for n, _ in on_gpu] == [n for n, _ in on_cpu]
    for (name, g), (_, c) in zip(on_gpu, on_cpu):
        assert g.is_cuda and g.dtype == c.dtype and g.shape == c.shape, name
        assert torch.equal(_bits(g), _bits(c)), f"{name} differs"
    back_gpu = dict(dequantized_items(on_gpu, torch.bfloat16))
    back_cpu = dict(dequantized_items(on_cpu, torch.bfloat16))
    assert list(back_gpu) == [n for n, _ in named]
    assert all(torch.equal(_bits(back_gpu[n]), _bits(back_cpu[n])) for n in back_cpu)


def test_fused_groups_share_one_scale_on_cuda_and_survive_vllm_s_requantization(gpu_model: str) -> None:
    """On CUDA, q/k/v and gate/up of each layer get one scale, their largest magnitude over 448;
    o_proj and down_proj their own; and quantizing the fused tensor that arrives (vLLM's online FP8
    of ``qkv_proj`` and ``gate_up_proj``: one scale per fused tensor) gives back exactly the values
    sent."""
    named = [(n, t.to(CUDA)) for n, t in _policy_weights(gpu_model)]
    weights = dict(named)
    items = dict(quantized_items(named))
    groups: dict[str, list[str]] = {}
    for name in weights:
        if name + SCALE_SUFFIX in items and (group := fused_group(name)) is not None:
            groups.setdefault(group, []).append(name)
    assert groups and sorted({len(members) for members in groups.values()}) == [2, 3]
    for group, members in groups.items():
        scales = [items[m + SCALE_SUFFIX] for m in members]
        assert all(s.is_cuda and torch.equal(s, scales[0]) for s in scales), group
        amax = max(weights[m].abs().max().float() for m in members)
        assert torch.equal(scales[0], amax / E4M3_MAX), group
        sent = torch.cat([dequantize(items[m], scales[0], torch.float32) for m in members])
        again, scale = quantize(sent)  # the engine's quantization of the fused layer
        assert torch.equal(dequantize(again, scale, torch.float32), sent), group
    alone = [n for n in weights if n.endswith(("o_proj.weight", "down_proj.weight"))]
    assert alone and all(fused_group(n) is None for n in alone)
    for name in alone:
        assert torch.equal(items[name + SCALE_SUFFIX], weights[name].abs().max().float() / E4M3_MAX), name
