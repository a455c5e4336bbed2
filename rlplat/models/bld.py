"""Puzzle's block library: block-wise local distillation (BLD), per-block scoring, assembly.

Decoupled BLD (arXiv 2411.19146, section 3.1): at every layer of the parent, each alternative
attention learns to reproduce the parent's attention sub-block, ``a = x + attn(norm(x))``, from the
parent's own input ``x``; each alternative FFN learns the parent's FFN sub-block, ``y = a + ffn(norm(a))``,
from the parent's ``a``. A variant is one sub-block (a ``DeciBlock`` whose other half is absent),
so attention and FFN variants combine freely into block variants afterwards. Training minimises
the normalised MSE ``|out - target|^2 / |target - input|^2``: 1.0 is what removing the sub-block
costs (the no-op variant scores exactly that), 0.0 is the parent.

Variants start from the parent: fewer KV heads average the parent's KV heads in each merged
group; a narrower FFN keeps the parent's most active channels on the calibration data.

``replacement_kl`` scores a block variant as Puzzle does: the parent with only that block
replaced, KL(parent || replaced) per token on held-out text. ``assemble`` builds the child of a
choice of variants. Plain torch: the NAS stage runs these as Ray tasks, one per layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from rlplat.models.decilm import DeciBlock, HeteroLlamaForCausalLM, rope_cos_sin
from rlplat.models.decilm_format import AttentionConfig, BlockConfig, FFNConfig, check_block

NO_ATTENTION = AttentionConfig("none")
NO_FFN = FFNConfig("none")

# A sub-block's weights, as named inside a DeciBlock (``self_attn.q_proj.weight``, ``mlp.up_proj.weight``, ...).
Weights = dict[str, Tensor]


@dataclass(frozen=True)
class LayerLibrary:
    """What BLD produced for one layer: each variant's weights and its loss after each training
    step (empty for the parent's own sub-block and for "none", which are not trained)."""

    attention: Mapping[AttentionConfig, Weights]
    ffn: Mapping[FFNConfig, Weights]
    losses: Mapping[AttentionConfig | FFNConfig, tuple[float, ...]]


def _layer(model: HeteroLlamaForCausalLM, index: int) -> DeciBlock:
    layer = model.model.layers[index]
    assert isinstance(layer, DeciBlock)
    return layer


def _rope(model: HeteroLlamaForCausalLM, hidden: Tensor) -> tuple[Tensor, Tensor]:
    b, t, _ = hidden.shape
    return rope_cos_sin(torch.arange(t, device=hidden.device).expand(b, t), model.config.head_dim,
                        model.config.rope_theta, hidden.dtype)


@torch.no_grad()
def block_inputs(model: HeteroLlamaForCausalLM, input_ids: Tensor) -> list[Tensor]:
    """The residual stream entering each block, and after the last one: ``len(blocks) + 1``
    tensors ``[B, T, H]`` (causal attention over every token: pass unpadded rows)."""
    x = model.model.embed_tokens(input_ids)
    cos, sin = _rope(model, x)
    states = [x]
    for layer in model.model.layers:
        x = layer(x, cos, sin, None)
        states.append(x)
    return states


def _sub_block(model: HeteroLlamaForCausalLM, attention: AttentionConfig = NO_ATTENTION,
               ffn: FFNConfig = NO_FFN, index: int = 0) -> DeciBlock:
    """A new block of ``model``'s shape (``ValueError`` for a block vLLM cannot serve)."""
    block = BlockConfig(attention, ffn)
    check_block(block, model.config.hidden_size, model.config.num_attention_heads, index)
    return DeciBlock(model.config, block).to(model.lm_head.weight.dtype)


def _parent_part(model: HeteroLlamaForCausalLM, index: int, part: str) -> Weights:
    """The parent's own attention (``part="attention"``) or FFN weights at ``index``, with norm."""
    prefixes = ("self_attn.", "input_layernorm.") if part == "attention" else ("mlp.", "post_attention_layernorm.")
    return {k: v.detach().clone() for k, v in _layer(model, index).state_dict().items() if k.startswith(prefixes)}


@torch.no_grad()
def init_attention(model: HeteroLlamaForCausalLM, index: int, variant: AttentionConfig) -> DeciBlock:
    """An attention sub-block of ``variant`` started from the parent's at ``index``: queries,
    output and norm copied; each new KV head the mean of the parent KV heads it merges."""
    parent = _layer(model, index).self_attn
    group = variant.n_heads_in_group
    if parent is None or variant.kind != "full" or group is None:
        raise ValueError(f"layer {index}: only a full attention can be initialised from a parent attention")
    block = _sub_block(model, attention=variant, index=index)
    assert block.self_attn is not None
    parent_kv, new_kv = parent.num_kv_heads, parent.num_heads // group
    if parent_kv % new_kv:
        raise ValueError(f"layer {index}: {parent_kv} KV heads cannot be merged into {new_kv}")
    state = _parent_part(model, index, "attention")
    for name in ("k_proj", "v_proj"):
        w = state[f"self_attn.{name}.weight"].view(new_kv, parent_kv // new_kv, parent.head_dim, -1)
        state[f"self_attn.{name}.weight"] = w.mean(dim=1).reshape(new_kv * parent.head_dim, -1)
    block.load_state_dict(state)
    return block


@torch.no_grad()
def init_ffn(model: HeteroLlamaForCausalLM, index: int, variant: FFNConfig, inputs: Tensor) -> DeciBlock:
    """An FFN sub-block of ``variant`` started from the parent's at ``index``: the parent's channels
    of largest mean activation ``|silu(gate) * up|`` on ``inputs`` (the FFN sub-block's input)."""
    layer = _layer(model, index)
    if layer.mlp is None or variant.kind != "full":
        raise ValueError(f"layer {index}: only a full FFN can be initialised from a parent FFN")
    width = variant.width(model.config.hidden_size)
    parent_width = layer.mlp.up_proj.out_features
    if width > parent_width:
        raise ValueError(f"layer {index}: FFN width {width} is wider than the parent's {parent_width}")
    h = layer.post_attention_layernorm(inputs)
    activity = (F.silu(layer.mlp.gate_proj(h)) * layer.mlp.up_proj(h)).abs().flatten(0, -2).mean(0)
    keep = activity.topk(width).indices.sort().values
    state = _parent_part(model, index, "ffn")
    for name in ("gate_proj", "up_proj"):
        state[f"mlp.{name}.weight"] = state[f"mlp.{name}.weight"][keep]
    state["mlp.down_proj.weight"] = state["mlp.down_proj.weight"][:, keep]
    block = _sub_block(model, ffn=variant, index=index)
    block.load_state_dict(state)
    return block


def normalized_mse(out: Tensor, target: Tensor, inputs: Tensor) -> Tensor:
    """``|out - target|^2 / |target - inputs|^2`` over the whole batch: 1.0 for a sub-block that
    adds nothing, 0.0 for an exact copy."""
    return (out - target).pow(2).sum() / (target - inputs).pow(2).sum().clamp_min(1e-12)


def train_variant(model: HeteroLlamaForCausalLM, block: DeciBlock, inputs: Tensor, targets: Tensor, steps: int,
                  lr: float, batch_size: int, seed: int = 0) -> tuple[float, ...]:
    """Train ``block`` (a sub-block variant) to map ``inputs`` to ``targets`` (``[N, T, H]``, the
    parent sub-block's input and output) for ``steps`` Adam steps on random batches of
    ``batch_size`` rows; returns the normalised MSE of each step's batch, before its update."""
    cos, sin = _rope(model, inputs[:batch_size])
    optim = torch.optim.Adam(block.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    block.train()
    losses = []
    for _ in range(steps):
        rows = torch.randperm(inputs.shape[0], generator=gen)[:batch_size]
        x, y = inputs[rows], targets[rows]
        loss = normalized_mse(block(x, cos[: len(rows)], sin[: len(rows)], None), y, x)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    block.eval()
    return tuple(losses)


@torch.no_grad()
def parent_targets(model: HeteroLlamaForCausalLM, index: int, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """The parent's attention sub-block output ``a`` and block output ``y`` at ``index`` for the
    block inputs ``inputs``."""
    layer = _layer(model, index)
    cos, sin = _rope(model, inputs)
    a = inputs if layer.self_attn is None else inputs + layer.self_attn(layer.input_layernorm(inputs), cos, sin, None)
    y = a if layer.mlp is None else a + layer.mlp(layer.post_attention_layernorm(a))
    return a, y


def build_layer_library(model: HeteroLlamaForCausalLM, index: int, inputs: Tensor,
                        attention: Sequence[AttentionConfig], ffn: Sequence[FFNConfig], steps: int, lr: float,
                        batch_size: int, seed: int = 0) -> LayerLibrary:
    """BLD at layer ``index``: every variant in ``attention`` and ``ffn`` that is neither "none"
    nor the parent's own is initialised from the parent and trained (``train_variant``);
    ``inputs`` ``[N, T, H]`` is the residual stream entering the layer on the calibration text."""
    parent = model.config.blocks[index]
    a, y = parent_targets(model, index, inputs)
    losses: dict[AttentionConfig | FFNConfig, tuple[float, ...]] = {}

    def weights(variant: AttentionConfig | FFNConfig, part: str, x: Tensor, target: Tensor) -> Weights:
        if variant in (parent.attention, parent.ffn):
            return _parent_part(model, index, part)
        if variant.kind == "none":
            return {}
        block = (init_attention(model, index, variant) if isinstance(variant, AttentionConfig)
                 else init_ffn(model, index, variant, x))
        losses[variant] = train_variant(model, block, x, target, steps, lr, batch_size, seed)
        return {k: t.detach().clone() for k, t in block.state_dict().items()}

    return LayerLibrary({v: weights(v, "attention", inputs, a) for v in attention},
                        {f: weights(f, "ffn", a, y) for f in ffn}, losses)


@torch.no_grad()
def assemble(model: HeteroLlamaForCausalLM, blocks: Sequence[BlockConfig],
             libraries: Sequence[LayerLibrary]) -> HeteroLlamaForCausalLM:
    """The child with ``blocks[l]`` at layer ``l``, its sub-blocks' weights from ``libraries[l]``;
    embeddings, final norm and head are the parent's."""
    if len(blocks) != len(model.config.blocks) or len(libraries) != len(blocks):
        raise ValueError(f"{len(blocks)} blocks and {len(libraries)} libraries for {len(model.config.blocks)} layers")
    with torch.device("meta"):
        child = HeteroLlamaForCausalLM(replace(model.config, blocks=tuple(blocks)))
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("model.layers.")}
    for i, (block, lib) in enumerate(zip(blocks, libraries, strict=True)):
        if block.attention not in lib.attention or block.ffn not in lib.ffn:
            raise ValueError(f"layer {i}: the library has no variant {block}")
        for k, v in {**lib.attention[block.attention], **lib.ffn[block.ffn]}.items():
            state[f"model.layers.{i}.{k}"] = v.clone()
    child.load_state_dict(state, strict=True, assign=True)
    return child.eval()


@torch.no_grad()
def replacement_kl(model: HeteroLlamaForCausalLM, index: int, block: BlockConfig, library: LayerLibrary,
                   block_input: Tensor, parent_logits: Tensor) -> float:
    """Mean per-token KL(parent || parent with block ``index`` replaced by ``block``) on held-out
    text: ``block_input`` is the residual stream entering the block there (``block_inputs``) and
    ``parent_logits`` the parent's logits on it; only layers from ``index`` on are recomputed."""
    replaced = _sub_block(model, block.attention, block.ffn, index)
    replaced.load_state_dict({**library.attention[block.attention], **library.ffn[block.ffn]})
    cos, sin = _rope(model, block_input)
    x = replaced(block_input, cos, sin, None)
    for layer in list(model.model.layers)[index + 1:]:
        x = layer(x, cos, sin, None)
    return kl_per_token(parent_logits, final_logits(model, x))


def final_logits(model: HeteroLlamaForCausalLM, last_state: Tensor) -> Tensor:
    """The logits of the residual stream after the last block (``block_inputs(...)[-1]``)."""
    return model.lm_head(model.model.norm(last_state))


def kl_per_token(parent_logits: Tensor, child_logits: Tensor) -> float:
    """Mean over tokens of KL(softmax(parent) || softmax(child)), in float32."""
    p = F.log_softmax(parent_logits.float(), dim=-1)
    q = F.log_softmax(child_logits.float(), dim=-1)
    return float((p.exp() * (p - q)).sum(-1).mean())
