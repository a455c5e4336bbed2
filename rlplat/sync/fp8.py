"""FP8 (e4m3) weights for the sync: quantize on the learner, dequantize on the engine (pure torch).

``rollout.precision=fp8`` sends each linear weight as ``float8_e4m3fn`` values with float32 scales,
``x ~= q * scale``: one scale per tensor (vLLM's online FP8 layout) or one per ``block x block``
tile (the DeepSeek-V3 layout). Embeddings, the LM head, norms and biases stay in full precision,
as the peers do: they are small and the most sensitive to rounding.

Error bound (e4m3: 3 mantissa bits, largest finite 448, smallest subnormal 2**-9): every value
comes back within ``max(|x| * 2**-4, scale * 2**-10)`` of itself, i.e. half a unit in the last place
for normal numbers and half the subnormal step below them. Never NaN or Inf for finite input: the
scale is ``amax / 448`` (so nothing overflows), at least the smallest normal float32 (so nothing
divides by zero), and 1 for an all-zero tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

FP8_DTYPE = torch.float8_e4m3fn
E4M3_MAX = 448.0
# Name suffix of a weight's scale tensor in the sync buckets; it travels just before its weight.
SCALE_SUFFIX = ".fp8_scale"
_FULL_PRECISION = ("embed_tokens", "lm_head")


def fp8_eligible(name: str, shape: tuple[int, ...]) -> bool:
    """Whether ``name`` is sent as FP8: a 2-D linear weight outside the embeddings and LM head."""
    return len(shape) == 2 and name.endswith(".weight") and not any(k in name for k in _FULL_PRECISION)


def _scale(amax: Tensor) -> Tensor:
    tiny = torch.finfo(torch.float32).tiny
    scale = (amax.float() / E4M3_MAX).clamp(min=tiny)
    return torch.where(amax > 0, scale, torch.ones_like(scale))


def quantize(x: Tensor, block: int | None = None) -> tuple[Tensor, Tensor]:
    """``(q, scale)`` with ``q`` float8_e4m3fn of ``x``'s shape and ``scale`` float32: a 0-d tensor,
    or with ``block`` (2-D ``x`` only) one per ``block x block`` tile, shape ``[ceil(R/b), ceil(C/b)]``."""
    if block is None:
        scale = _scale(x.detach().abs().max() if x.numel() else torch.zeros(()))
        return (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(FP8_DTYPE), scale
    if x.dim() != 2 or block <= 0:
        raise ValueError(f"block scales need a 2-D tensor and a positive block, got shape {tuple(x.shape)}, "
                         f"block {block}")
    tiles = _tiles(x.detach().float().abs(), block)
    scale = _scale(tiles.amax(dim=(1, 3)))
    q = (x.float() / _expand(scale, block, x.shape)).clamp(-E4M3_MAX, E4M3_MAX).to(FP8_DTYPE)
    return q, scale


def dequantize(q: Tensor, scale: Tensor, dtype: torch.dtype, block: int | None = None) -> Tensor:
    """``q * scale`` in ``dtype``; ``block``: ``scale`` holds one value per ``block x block`` tile."""
    x = q.float()
    x = x * (scale if block is None else _expand(scale, block, q.shape))
    return x.to(dtype)


def _tiles(x: Tensor, block: int) -> Tensor:
    """``x`` zero-padded to whole tiles, viewed as ``[R/b, b, C/b, b]``."""
    rows, cols = x.shape
    pr, pc = -rows % block, -cols % block
    x = torch.nn.functional.pad(x, (0, pc, 0, pr))
    return x.view((rows + pr) // block, block, (cols + pc) // block, block)


def _expand(scale: Tensor, block: int, shape: torch.Size | tuple[int, ...]) -> Tensor:
    rows, cols = shape
    return scale.repeat_interleave(block, 0).repeat_interleave(block, 1)[:rows, :cols]


def quantized_items(named: Iterable[tuple[str, Tensor]]) -> Iterator[tuple[str, Tensor]]:
    """The learner's side: each eligible weight becomes its scale then its FP8 values (per-tensor
    scales); other tensors pass unchanged."""
    for name, t in named:
        if fp8_eligible(name, tuple(t.shape)):
            q, scale = quantize(t)
            yield name + SCALE_SUFFIX, scale
            yield name, q
        else:
            yield name, t


def dequantized_items(items: Iterable[tuple[str, Tensor]], dtype: torch.dtype) -> Iterator[tuple[str, Tensor]]:
    """The engine's side of ``quantized_items``: FP8 weights come back as ``dtype`` (FP8-rounded)."""
    scale: Tensor | None = None
    for name, t in items:
        if name.endswith(SCALE_SUFFIX):
            scale = t
        elif t.dtype == FP8_DTYPE:
            if scale is None:
                raise ValueError(f"FP8 weight {name} arrived without its scale")
            yield name, dequantize(t, scale, dtype)
            scale = None
        else:
            yield name, t


def export_metas(metas: Iterable[tuple[str, torch.dtype, tuple[int, ...]]],
                 fp8: bool) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    """Bucket metadata of what ``quantized_items`` yields (``fp8``) or of the tensors as they are."""
    out: list[tuple[str, torch.dtype, tuple[int, ...]]] = []
    for name, dtype, shape in metas:
        if fp8 and fp8_eligible(name, shape):
            out += [(name + SCALE_SUFFIX, torch.float32, ()), (name, FP8_DTYPE, shape)]
        else:
            out.append((name, dtype, shape))
    return out
