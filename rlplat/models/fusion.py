"""FFN Fusion (arXiv 2503.18908): runs of consecutive attention-free blocks become one wider FFN.

After Puzzle removes attention from some blocks, a run of consecutive FFN-only blocks computes
``x_{k+1} = x_k + f_k(n_k(x_k))`` one after the other. When each FFN depends little on the ones
before it in the run, the run is replaced by a single layer that feeds every FFN the run's input:
``x + sum_k f_k(n_k(x))``. That sum is one SwiGLU FFN whose width is the sum of the widths (gate and
up rows concatenated, down columns concatenated), so the fused layer is an ordinary DeciLM block
(no attention, one FFN with an exact ``intermediate_size``) that vLLM serves unchanged, with one
large matrix product per projection instead of several small ones in sequence.

Each part keeps its own RMSNorm scale: ``gate(w * rms(x)) = (gate * w)(rms(x))``, so the scales are
folded into the gate and up rows and the fused layer's norm has unit weight. The fused layer then
equals the parallel form exactly (up to float rounding); the error against the sequential original
is what the dependency measure predicts and what recovery distillation repairs.

Pure torch over ``rlplat.models.decilm``: no Ray, vLLM or DeepSpeed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from rlplat.models.decilm import DeciBlock, HeteroLlamaForCausalLM
from rlplat.models.decilm_format import AttentionConfig, BlockConfig, FFNConfig

Run = tuple[int, int]  # [start, end) layer indices


def ffn_only_runs(blocks: Sequence[BlockConfig], min_length: int = 2) -> list[Run]:
    """Maximal runs ``[start, end)`` of consecutive blocks with no attention and a full FFN, at least
    ``min_length`` long: the candidates for fusion."""
    runs, start = [], None
    for i, b in enumerate([*blocks, None]):
        fusable = b is not None and b.attention.kind == "none" and b.ffn.kind == "full"
        if fusable and start is None:
            start = i
        elif not fusable and start is not None:
            if i - start >= min_length:
                runs.append((start, i))
            start = None
    return runs


def _layer(model: HeteroLlamaForCausalLM, index: int) -> DeciBlock:
    layer = model.model.layers[index]
    assert isinstance(layer, DeciBlock)
    return layer


def _ffn_out(block: DeciBlock, x: Tensor) -> Tensor:
    """The FFN branch of an attention-free block (what it adds to the residual stream)."""
    assert block.mlp is not None, "fusion candidates have an FFN"
    return block.mlp(block.post_attention_layernorm(x))


@torch.no_grad()
def run_dependency(model: HeteroLlamaForCausalLM, run: Run, hidden: Tensor) -> Tensor:
    """The FFN Fusion paper's pairwise dependency within ``run``, on the run's input ``hidden``
    ``[B, T, H]`` (the residual stream before block ``run[0]``).

    Entry ``[i, j]`` (``i < j``, indices within the run) is the cosine distance, averaged over
    tokens, between what FFN ``j`` adds in the original sequential run and what it adds when FFN
    ``i`` is skipped: near 0 when ``j`` does not depend on ``i``. Other entries are 0.
    """
    layers = [_layer(model, k) for k in range(*run)]
    n = len(layers)

    def outputs(skip: int | None) -> list[Tensor]:
        x, outs = hidden, []
        for k, layer in enumerate(layers):
            out = _ffn_out(layer, x)
            outs.append(out)
            if k != skip:
                x = x + out
        return outs

    base = outputs(None)
    dep = torch.zeros(n, n)
    for i in range(n - 1):
        without = outputs(i)
        for j in range(i + 1, n):
            cos = F.cosine_similarity(base[j].double(), without[j].double(), dim=-1)
            dep[i, j] = float((1.0 - cos).mean())
    return dep


def split_run(run: Run, dependency: Tensor, threshold: float) -> list[Run]:
    """Split ``run`` into consecutive sub-runs, greedily left to right, so that no pair inside a
    sub-run has a dependency above ``threshold``; sub-runs of one block are left out (nothing to
    fuse). ``dependency`` is ``run_dependency``'s matrix for ``run``."""
    start, end = run
    if dependency.shape != (end - start, end - start):
        raise ValueError(f"dependency matrix {tuple(dependency.shape)} does not fit run {run}")
    out, lo = [], 0
    for j in range(1, end - start + 1):
        closes = j == end - start or bool((dependency[lo:j, j] > threshold).any())
        if closes:
            if j - lo >= 2:
                out.append((start + lo, start + j))
            lo = j
    return out


def fused_block_config(blocks: Sequence[BlockConfig], hidden_size: int) -> BlockConfig:
    """The block that replaces ``blocks`` (all attention-free with a full FFN): no attention, one FFN
    whose exact width is the sum of theirs."""
    if any(b.attention.kind != "none" or b.ffn.kind != "full" for b in blocks):
        raise ValueError("only attention-free blocks with a full FFN can be fused")
    return BlockConfig(AttentionConfig("none"), FFNConfig("full", intermediate_size=sum(b.ffn.width(hidden_size)
                                                                                          for b in blocks)))


@torch.no_grad()
def fuse_runs(model: HeteroLlamaForCausalLM, runs: Sequence[Run]) -> HeteroLlamaForCausalLM:
    """A new model in which each run of ``runs`` (disjoint, attention-free, full FFNs) is one fused
    layer; every other weight is copied. The fused layer computes ``x + sum_k f_k(n_k(x))``."""
    cfg = model.config
    ordered = sorted(runs)
    for (_, end), (start, _) in itertools.pairwise(ordered):
        if start < end:
            raise ValueError(f"fusion runs overlap: {ordered}")
    starts = {s: e for s, e in ordered}
    plan: list[tuple[BlockConfig, list[int]]] = []
    i = 0
    while i < len(cfg.blocks):
        end = starts.get(i, i + 1)
        members = list(range(i, end))
        block = fused_block_config([cfg.blocks[k] for k in members], cfg.hidden_size) if end > i + 1 else cfg.blocks[i]
        plan.append((block, members))
        i = end
    new_cfg = replace(cfg, blocks=tuple(b for b, _ in plan))
    with torch.device("meta"):
        fused = HeteroLlamaForCausalLM(new_cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("model.layers.")}
    for new_index, (_, members) in enumerate(plan):
        prefix = f"model.layers.{new_index}."
        if len(members) == 1:
            old = f"model.layers.{members[0]}."
            state.update({prefix + k[len(old):]: v for k, v in model.state_dict().items() if k.startswith(old)})
        else:
            state.update({prefix + k: v for k, v in _fused_weights([_layer(model, k) for k in members]).items()})
    fused.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True, assign=True)
    return fused.train(model.training)


def _fused_weights(layers: Sequence[DeciBlock]) -> dict[str, Tensor]:
    """Weights of one FFN equal to the sum of ``layers``' FFNs fed the same input, each part's norm
    scale folded into its gate and up rows (the fused norm's weight is 1)."""
    gates, ups, downs = [], [], []
    for layer in layers:
        assert layer.mlp is not None
        scale = layer.post_attention_layernorm.weight
        gates.append(layer.mlp.gate_proj.weight * scale[None, :])
        ups.append(layer.mlp.up_proj.weight * scale[None, :])
        downs.append(layer.mlp.down_proj.weight)
    norm = torch.ones_like(layers[0].post_attention_layernorm.weight)
    return {"post_attention_layernorm.weight": norm, "mlp.gate_proj.weight": torch.cat(gates, 0),
            "mlp.up_proj.weight": torch.cat(ups, 0), "mlp.down_proj.weight": torch.cat(downs, 1)}
