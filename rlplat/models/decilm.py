"""A heterogeneous Llama (a Puzzle NAS / FFN Fusion child) in plain torch, stored as DeciLM.

A Puzzle child (arXiv 2411.19146) keeps its parent's hidden size, heads and vocabulary, but each
block chooses its own attention (full, with its own number of KV heads, or none) and its own FFN
(its own width, or none). vLLM serves such a checkpoint with its native ``DeciLMForCausalLM``
(``vllm/model_executor/models/nemotron_nas.py``) when ``config.json`` says
``architectures: ["DeciLMForCausalLM"]``, ``model_type: "nemotron-nas"`` and lists one
``block_configs`` entry per layer::

    {"attention": {"no_op": false, "replace_with_linear": false, "n_heads_in_group": 2},
     "ffn": {"no_op": false, "replace_with_linear": false, "ffn_mult": 1.0}}

Neither transformers nor vLLM registers a config class for ``nemotron-nas``, and vLLM reads the
blocks as attributes (``block.attention.no_op``), not dict keys. So ``save_decilm`` also writes
``configuration_decilm.py`` (named in ``auto_map``, as NVIDIA's checkpoints do) and the directory
loads with ``trust_remote_code=True``; the file is local, so no hub access is needed.

Weight names are Llama's (``model.layers.{i}.self_attn.q_proj.weight``, ``...mlp.gate_proj.weight``,
``input_layernorm``, ``post_attention_layernorm``, ``model.norm``, ``lm_head``); a block without
attention (or FFN) has neither the sub-block's weights nor its norm, exactly as vLLM builds it.

The format (block configs, width rule, validation, ``config.json``) is in
``rlplat.models.decilm_format``. Only torch, safetensors and (for ``from_llama``) transformers are
imported here: no vLLM, Ray or DeepSpeed (docs/design.md, "Layers and import rules").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rlplat.models.decilm_format import (
    AttentionConfig,
    BlockConfig,
    FFNConfig,
    HeteroLlamaConfig,
    check_llama_features,
    ffn_mult_for_width,
    read_decilm_config,
    rope_theta_of,
    write_decilm_config,
)

WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class CausalLMOutput:
    """What ``HeteroLlamaForCausalLM.forward`` returns, named like transformers' output: ``logits``
    ``[B, T, V]``; ``hidden_states`` (when asked) the embeddings, each block's output but the last,
    then the final normed states: ``len(blocks) + 1`` tensors ``[B, T, H]``, as transformers' Llama."""

    logits: Tensor
    hidden_states: tuple[Tensor, ...] | None = None


class RMSNorm(nn.Module):
    """Llama's RMSNorm: normalise in float32, scale in the input dtype (as transformers does)."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_cos_sin(position_ids: Tensor, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Llama's default RoPE tables ``[B, T, head_dim]`` for ``position_ids`` ``[B, T]``, computed in
    float32 the way transformers does (halves duplicated: the "neox" layout vLLM also uses)."""
    # Computed per call rather than held in a buffer: a buffer would follow a .to(bfloat16) of the
    # model and lose the float32 frequencies transformers keeps.
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=position_ids.device).float() / head_dim
    inv_freq = 1.0 / (theta ** exponent)
    freqs = (inv_freq[None, :, None] @ position_ids[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Scaled dot-product attention of ``[B, H, T, D]`` queries, keys and values, ``mask`` as
    ``Attention.forward``'s; returns ``[B, T, H, D]``."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None).transpose(1, 2)


class Attention(nn.Module):
    """Grouped-query attention with RoPE; ``num_kv_heads`` is this block's own."""

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=False)
        # The attention proper; sequence parallelism swaps in Ulysses attention (rlplat/learner/ulysses.py).
        self.core: Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor] = sdpa

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None) -> Tensor:
        """``x`` ``[B, T, H]``; ``mask`` ``[B, 1, T, T]`` bool (True: may attend) or None (causal)."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        group = self.num_heads // self.num_kv_heads
        # Query head h reads KV head h // group: transformers' repeat_kv and vLLM's GQA layout.
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = self.core(q, k, v, mask)
        return self.o_proj(out.reshape(b, t, self.num_heads * self.head_dim))


class MLP(nn.Module):
    """Llama's SwiGLU FFN: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DeciBlock(nn.Module):
    """One layer: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``, each skipped when absent. Absent
    sub-blocks register no module, so the state dict has exactly the weights vLLM loads."""

    def __init__(self, config: HeteroLlamaConfig, block: BlockConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.self_attn: Attention | None = None
        self.mlp: MLP | None = None
        group = block.attention.n_heads_in_group  # set exactly when the attention is full (validate_blocks)
        if block.attention.kind == "full" and group is not None:
            self.input_layernorm = RMSNorm(h, config.rms_norm_eps)
            self.self_attn = Attention(h, config.num_attention_heads, config.num_attention_heads // group)
        if block.ffn.kind == "full":
            self.post_attention_layernorm = RMSNorm(h, config.rms_norm_eps)
            self.mlp = MLP(h, block.ffn.width(h))

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None) -> Tensor:
        if self.self_attn is not None:
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        if self.mlp is not None:
            x = x + self.mlp(self.post_attention_layernorm(x))
        return x


class HeteroLlamaModel(nn.Module):
    """Embeddings, blocks and final norm (transformers' ``model.`` prefix)."""

    def __init__(self, config: HeteroLlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DeciBlock(config, b) for b in config.blocks)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class HeteroLlamaForCausalLM(nn.Module):
    """A heterogeneous Llama: per-block attention (own KV-head count, or none) and FFN (own width,
    or none). Forward is transformers' ``LlamaForCausalLM`` for the same weights when every block is
    full; ``save_decilm`` writes it in the format vLLM's ``DeciLMForCausalLM`` serves.

    New weights are drawn like transformers' (normal, std ``init_std``; norms 1) in the dtype of
    ``config.dtype``; build under ``torch.device("meta")`` to skip that (``load_decilm`` does).
    """

    def __init__(self, config: HeteroLlamaConfig, init_std: float = 0.02) -> None:
        super().__init__()
        self.config = config
        self.model = HeteroLlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.gradient_checkpointing = False
        if self.lm_head.weight.device.type != "meta":
            self._init_weights(init_std)
        self.to(getattr(torch, config.dtype))

    def _init_weights(self, std: float) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=std)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them
        (transformers' switch of the same name; ``model.gradient_checkpointing``)."""
        self.gradient_checkpointing = True

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                *, output_hidden_states: bool = False, use_cache: bool = False) -> CausalLMOutput:
        """Causal-LM logits of ``input_ids`` ``[B, T]``.

        Args:
            attention_mask: None (every token real), ``[B, T]`` with 1 for real tokens and 0 for
                padding (combined with the causal mask), or ``[B, 1, T, T]`` bool, True where a
                query may attend a key, used as given (it must hold the causal part itself: packed
                rows, ``rlplat.algo.packing``).
            position_ids: ``[B, T]``; None means ``0..T-1`` in every row, as transformers does (so
                pass them for left-padded or packed rows).
            output_hidden_states: also return the hidden states (see ``CausalLMOutput``).
            use_cache: accepted for transformers-style callers and ignored: there is no KV cache.
        """
        del use_cache
        b, t = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(t, device=input_ids.device).expand(b, t)
        x = self.model.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta, x.dtype)
        mask = attention_bool_mask(attention_mask, t)
        states: list[Tensor] = []
        for layer in self.model.layers:
            if output_hidden_states:
                states.append(x)
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, cos, sin, mask, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask)
        x = self.model.norm(x)
        if output_hidden_states:
            states.append(x)
        return CausalLMOutput(self.lm_head(x), tuple(states) if output_hidden_states else None)


def attention_bool_mask(attention_mask: Tensor | None, length: int) -> Tensor | None:
    """The ``[B, 1, T, T]`` bool mask (True: may attend) of a forward's ``attention_mask``; None when
    plain causal attention suffices (no mask, or a ``[B, T]`` mask without padding)."""
    if attention_mask is None:
        return None
    if attention_mask.dim() == 4:
        if attention_mask.dtype != torch.bool:
            # An additive float mask (0 / -inf) would invert under .bool(): refuse rather than guess.
            raise ValueError(f"a [B, 1, T, T] attention_mask must be bool, got {attention_mask.dtype}")
        return attention_mask
    if attention_mask.dim() != 2 or attention_mask.shape[1] != length:
        raise ValueError(f"attention_mask must be [B, {length}] or [B, 1, {length}, {length}], "
                         f"got {tuple(attention_mask.shape)}")
    keys = attention_mask.bool()
    if bool(keys.all()):
        return None
    causal = torch.ones(length, length, dtype=torch.bool, device=keys.device).tril()
    allowed = causal[None, None] & keys[:, None, None, :]
    # A query with no key left (a left-padding position) attends itself: softmax over nothing is
    # NaN, and a NaN in a padding row would still poison gradients through the masked loss.
    eye = torch.eye(length, dtype=torch.bool, device=keys.device)[None, None]
    return allowed | (eye & ~allowed.any(dim=-1, keepdim=True))


# --- save, load, convert --------------------------------------------------------------------------

def save_decilm(model: HeteroLlamaForCausalLM, out_dir: str | Path, state_dict: dict[str, Tensor] | None = None) -> Path:
    """Write ``model`` to ``out_dir`` (created) as ``config.json``, ``configuration_decilm.py`` and
    ``model.safetensors`` (its weights, or ``state_dict`` when given: a sharded model's, gathered);
    returns the directory. Copy a tokenizer in beside it (``rlplat.models.hf.copy_tokenizer``)
    before serving it: vLLM loads it with ``trust_remote_code=True``."""
    from safetensors.torch import save_file

    out = write_decilm_config(model.config, out_dir)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in (state_dict or model.state_dict()).items()}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    return out


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a model directory (DeciLM or transformers): ``model.safetensors``, or
    the shards its index names."""
    index = path / f"{WEIGHTS_FILE}.index.json"
    if index.exists():
        return [path / shard for shard in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [path / WEIGHTS_FILE]


def _load_tensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a directory's weight files."""
    from safetensors.torch import load_file

    return {k: v for file in weight_files(path) for k, v in load_file(str(file)).items()}


def load_decilm(path: str | Path) -> HeteroLlamaForCausalLM:
    """The ``HeteroLlamaForCausalLM`` of a DeciLM directory (ours or a sharded one), on CPU, in the
    weights' dtype.

    Raises:
        ValueError: an unsupported config (``read_decilm_config``).
        RuntimeError: weights missing or left over (torch's strict ``load_state_dict``).
    """
    p = Path(path)
    config = read_decilm_config(p)
    with torch.device("meta"):
        model = HeteroLlamaForCausalLM(config)
    model.load_state_dict(_load_tensors(p), strict=True, assign=True)
    return model.eval()


def from_llama(llama: str | Path | nn.Module) -> HeteroLlamaForCausalLM:
    """A transformers ``LlamaForCausalLM`` (a module or its directory) as a ``HeteroLlamaForCausalLM``
    with every block full and the same outputs: each layer keeps its KV heads
    (``n_heads_in_group = heads // kv_heads``) and its FFN width (as ``ffn_mult`` when one gives it
    exactly, else as ``intermediate_size``). The weights are copied.

    Raises:
        ValueError: not a Llama, or Llama options this module does not compute (tied embeddings,
            biases, scaled RoPE, ...).
    """
    if isinstance(llama, (str, Path)):
        from transformers import LlamaForCausalLM

        module: nn.Module = LlamaForCausalLM.from_pretrained(str(llama))
    else:
        module = llama
    hf = getattr(module, "config", None)
    if hf is None or getattr(hf, "model_type", None) != "llama":
        raise ValueError(f"from_llama needs a transformers Llama, got {type(module).__name__}")
    raw = hf.to_dict()
    check_llama_features(raw, "from_llama")
    heads, kv = hf.num_attention_heads, hf.num_key_value_heads or hf.num_attention_heads
    if heads % kv:
        raise ValueError(f"from_llama: {heads} attention heads are not a multiple of {kv} KV heads")
    mult = ffn_mult_for_width(hf.hidden_size, hf.intermediate_size)
    ffn = FFNConfig("full", ffn_mult=mult) if mult is not None else FFNConfig("full", intermediate_size=hf.intermediate_size)
    weight = next(module.parameters())
    eos = hf.eos_token_id
    config = HeteroLlamaConfig(
        vocab_size=hf.vocab_size, hidden_size=hf.hidden_size, num_attention_heads=heads,
        blocks=tuple(BlockConfig(AttentionConfig("full", heads // kv), ffn) for _ in range(hf.num_hidden_layers)),
        max_position_embeddings=hf.max_position_embeddings, rms_norm_eps=hf.rms_norm_eps, rope_theta=rope_theta_of(raw),
        pad_token_id=hf.pad_token_id, bos_token_id=hf.bos_token_id,
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        dtype=str(weight.dtype).removeprefix("torch."),
    )
    with torch.device("meta"):
        model = HeteroLlamaForCausalLM(config)
    state = {k: v.detach().clone() for k, v in module.state_dict().items() if not k.endswith("rotary_emb.inv_freq")}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(weight.device).eval()
