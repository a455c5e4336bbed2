"""FP8 (e4m3) weights for the sync: quantize on the learner, dequantize on the engine (pure torch).

``rollout.precision=fp8`` sends each linear weight as ``float8_e4m3fn`` values with float32 scales,
``x ~= q * scale``: one scale per tensor (vLLM's online FP8 layout) or one per ``block x block``
tile (the DeepSeek-V3 layout). Embeddings, the LM head, norms and biases stay in full precision,
as the peers do: they are small and the most sensitive to rounding.

Fused groups share a scale. vLLM serves ``q_proj``/``k_proj``/``v_proj`` as one ``qkv_proj`` and
``gate_proj``/``up_proj`` as one ``gate_up_proj``, and its online FP8 quantizes each fused tensor with
one scale. So the learner quantizes each such group with the scale of the whole group (its largest
magnitude): FP8 values sent that way come back unchanged when vLLM re-quantizes the fused tensor,
and the CPU emulation rounds as a GPU engine does. Bucket planning keeps a group in one bucket
(``fused_group`` is the key), so a bucket's tensors are quantized together.

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
# The projections vLLM fuses into one layer (and one FP8 scale): qkv_proj and gate_up_proj.
FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def fp8_eligible(name: str, shape: tuple[int, ...]) -> bool:
    """Whether ``name`` is sent as FP8: a 2-D linear weight outside the embeddings and LM head."""
    return len(shape) == 2 and name.endswith(".weight") and not any(k in name for k in _FULL_PRECISION)


def fused_group(name: str) -> str | None:
    """The fused layer a weight (or its scale entry) belongs to in vLLM, e.g.
    ``model.layers.0.self_attn.q_proj.weight`` -> ``model.layers.0.self_attn.q_proj+k_proj+v_proj``;
    None for a weight vLLM keeps on its own."""
    parts = name.removesuffix(SCALE_SUFFIX).split(".")
    if len(parts) < 2 or parts[-1] != "weight":
        return None
    for group in FUSED:
        if parts[-2] in group:
            return ".".join([*parts[:-2], "+".join(group)])
    return None


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
    """The learner's side: each eligible weight becomes its scale then its FP8 values, in order.
    Consecutive members of one fused group (``fused_group``: q/k/v, gate/up of a layer) share one
    scale, so they are held back until the run of them ends; other tensors pass unchanged."""
    run: list[tuple[str, Tensor]] = []
    run_group: str | None = None
    for name, t in named:
        eligible = fp8_eligible(name, tuple(t.shape))
        group = fused_group(name) if eligible else None
        if run and group != run_group:
            yield from _quantized(run)
            run = []
        if group is not None:
            run, run_group = [*run, (name, t)], group
        elif eligible:
            yield from _quantized([(name, t)])
        else:
            yield name, t
    if run:
        yield from _quantized(run)


def _quantized(members: list[tuple[str, Tensor]]) -> Iterator[tuple[str, Tensor]]:
    """Each of ``members`` as its scale then its FP8 values, all with one scale (their largest
    magnitude's)."""
    amax = max((t.detach().abs().max() for _, t in members if t.numel()), default=torch.zeros(()))
    scale = _scale(torch.as_tensor(amax))
    for name, t in members:
        yield name + SCALE_SUFFIX, scale
        yield name, (t.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(FP8_DTYPE)


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
