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

Only torch, safetensors and (for ``from_llama``) transformers are imported here: no vLLM, Ray or
DeepSpeed (README "Architecture").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AttentionKind = Literal["full", "none"]
FFNKind = Literal["full", "none"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_CODE_FILE = "configuration_decilm.py"
ARCHITECTURE = "DeciLMForCausalLM"
MODEL_TYPE = "nemotron-nas"
# vLLM rounds every ffn_mult width up to this multiple (``_find_multiple(..., 256)`` in nemotron_nas.py).
FFN_WIDTH_MULTIPLE = 256


@dataclass(frozen=True)
class AttentionConfig:
    """One block's attention. ``"full"``: grouped-query attention with ``num_attention_heads //
    n_heads_in_group`` KV heads (1: multi-head; ``num_attention_heads``: multi-query).
    ``"none"``: the block has no attention (and no ``input_layernorm``); ``n_heads_in_group`` is None."""

    kind: AttentionKind
    n_heads_in_group: int | None = None


@dataclass(frozen=True)
class FFNConfig:
    """One block's SwiGLU FFN. ``"full"``: exactly one of ``ffn_mult`` (the width is
    ``ffn_width(hidden_size, ffn_mult)``, the form Puzzle searches over) or ``intermediate_size`` (an
    exact width, for a parent whose width no ``ffn_mult`` gives, e.g. 384, which is no multiple of
    256). ``"none"``: no FFN (and no ``post_attention_layernorm``); both fields None."""

    kind: FFNKind
    ffn_mult: float | None = None
    intermediate_size: int | None = None

    def width(self, hidden_size: int) -> int:
        """The FFN's intermediate width (0 for ``"none"``)."""
        if self.kind == "none":
            return 0
        if self.intermediate_size is not None:
            return self.intermediate_size
        if self.ffn_mult is None:
            raise ValueError("a full FFN needs ffn_mult or intermediate_size")
        return ffn_width(hidden_size, self.ffn_mult)


@dataclass(frozen=True)
class BlockConfig:
    """One layer of the child: its attention and its FFN, each present or not."""

    attention: AttentionConfig
    ffn: FFNConfig


@dataclass(frozen=True)
class HeteroLlamaConfig:
    """Everything that shapes a ``HeteroLlamaForCausalLM``; validated on construction
    (``validate_blocks``). ``head_dim`` is ``hidden_size // num_attention_heads`` (Llama's)."""

    vocab_size: int
    hidden_size: int
    num_attention_heads: int
    blocks: tuple[BlockConfig, ...]
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    dtype: str = "float32"

    def __post_init__(self) -> None:
        validate_blocks(self.hidden_size, self.num_attention_heads, self.blocks)
        if self.vocab_size <= 0:
            raise ValueError(f"vocab_size must be positive, got {self.vocab_size}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def ffn_width(hidden_size: int, ffn_mult: float) -> int:
    """The FFN width vLLM builds for ``ffn_mult``: ``int(2 * ffn_mult * hidden_size / 3)`` rounded up
    to a multiple of 256 (e.g. 4096 x 5.25 -> 14336). 0 when ``ffn_mult`` is that small."""
    # Exactly vLLM's _ffn_mult_to_intermediate_size and _find_multiple
    # (vllm/model_executor/models/nemotron_nas.py), in the same float operation order so that the
    # truncation agrees bit for bit: a width one off would make every weight of the block unloadable.
    width = int(2 * ffn_mult * hidden_size / 3)
    if width % FFN_WIDTH_MULTIPLE == 0:
        return width
    return width + FFN_WIDTH_MULTIPLE - width % FFN_WIDTH_MULTIPLE


def ffn_mult_for_width(hidden_size: int, width: int) -> float | None:
    """An ``ffn_mult`` whose ``ffn_width`` is exactly ``width``, or None when there is none (a width
    that is no multiple of 256)."""
    mult = 3 * width / (2 * hidden_size)
    return mult if width > 0 and ffn_width(hidden_size, mult) == width else None


# DeciLM block fields vLLM ignores, with the only value under which ignoring them is correct: any
# other value describes a block (linear replacement, sliding window, sinks, a non-gated or non-SiLU
# FFN, MoE) that vLLM's DeciLMForCausalLM or this module would compute differently.
_ATTENTION_NEUTRAL: dict[str, Any] = {
    "replace_with_linear": False, "sparsify": None, "window_length": None, "num_sink_tokens": None,
    "use_prefill_window_in_sink_attention": False, "unshifted_sink": False,
}
_FFN_NEUTRAL: dict[str, Any] = {"replace_with_linear": False, "sparsify": None, "gated": True,
                                "hidden_act": "silu", "moe": None}


def validate_blocks(hidden_size: int, num_heads: int,
                    blocks: Sequence[BlockConfig | Mapping[str, Any]]) -> tuple[BlockConfig, ...]:
    """Check that vLLM's ``DeciLMForCausalLM`` serves ``blocks`` as this module computes them, and
    return them as ``BlockConfig`` (a DeciLM ``block_configs`` dict is parsed first).

    Raises:
        ValueError: naming the block and the field: an unknown kind; ``n_heads_in_group`` missing,
            non-positive or not dividing ``num_heads``; an FFN with neither or both of
            ``ffn_mult``/``intermediate_size``, or a width of 0; a DeciLM field vLLM would ignore
            (``replace_with_linear``, ``window_length``, ...) set; no block with attention, or an FFN
            before the first attention (vLLM's first fused add-norm would get no residual);
            ``hidden_size`` not a multiple of ``num_heads`` or an odd head size (RoPE rotates pairs).
    """
    if num_heads <= 0 or hidden_size <= 0 or hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} must be a positive multiple of num_heads {num_heads}")
    if (hidden_size // num_heads) % 2:
        raise ValueError(f"head size {hidden_size // num_heads} must be even (RoPE rotates pairs of channels)")
    if not blocks:
        raise ValueError("a model needs at least one block")
    parsed = tuple(b if isinstance(b, BlockConfig) else parse_block(b, i) for i, b in enumerate(blocks))
    for i, block in enumerate(parsed):
        _check_attention(block.attention, num_heads, i)
        _check_ffn(block.ffn, hidden_size, i)
    _check_order(parsed)
    return parsed


def _check_attention(attn: AttentionConfig, num_heads: int, i: int) -> None:
    if attn.kind == "none":
        if attn.n_heads_in_group is not None:
            raise ValueError(f"block {i}: attention 'none' takes no n_heads_in_group, got {attn.n_heads_in_group}")
        return
    if attn.kind != "full":
        raise ValueError(f"block {i}: unknown attention kind {attn.kind!r} (expected 'full' or 'none')")
    g = attn.n_heads_in_group
    if not _is_int(g) or g <= 0 or num_heads % g:
        raise ValueError(f"block {i}: n_heads_in_group must be a positive divisor of num_attention_heads "
                         f"{num_heads}, got {g!r}")


def _check_ffn(ffn: FFNConfig, hidden_size: int, i: int) -> None:
    if ffn.kind == "none":
        if ffn.ffn_mult is not None or ffn.intermediate_size is not None:
            raise ValueError(f"block {i}: FFN 'none' takes no ffn_mult or intermediate_size")
        return
    if ffn.kind != "full":
        raise ValueError(f"block {i}: unknown FFN kind {ffn.kind!r} (expected 'full' or 'none')")
    if (ffn.ffn_mult is None) == (ffn.intermediate_size is None):
        raise ValueError(f"block {i}: a full FFN needs exactly one of ffn_mult and intermediate_size, got "
                         f"ffn_mult={ffn.ffn_mult!r}, intermediate_size={ffn.intermediate_size!r}")
    if ffn.ffn_mult is not None and not (_is_number(ffn.ffn_mult) and math.isfinite(ffn.ffn_mult)
                                         and ffn.ffn_mult > 0):
        raise ValueError(f"block {i}: ffn_mult must be a positive number, got {ffn.ffn_mult!r}")
    if ffn.intermediate_size is not None and not (_is_int(ffn.intermediate_size) and ffn.intermediate_size > 0):
        raise ValueError(f"block {i}: intermediate_size must be a positive integer, got {ffn.intermediate_size!r}")
    if ffn.width(hidden_size) <= 0:
        raise ValueError(f"block {i}: ffn_mult {ffn.ffn_mult} gives an FFN of width 0 at hidden size {hidden_size}")


def _check_order(blocks: Sequence[BlockConfig]) -> None:
    # vLLM's DeciModel starts with residual=None and only an attention sub-block sets it; an FFN
    # met first calls the fused add-norm without a residual, and the final norm needs one too.
    for i, block in enumerate(blocks):
        if block.attention.kind == "full":
            return
        if block.ffn.kind == "full":
            raise ValueError(f"block {i} has an FFN but no attention, and no earlier block has attention: "
                             "vLLM's DeciLM needs an attention block before the first FFN")
    raise ValueError("no block has attention: vLLM's DeciLM needs at least one")


def _is_int(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> TypeGuard[float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def parse_block(entry: Mapping[str, Any], index: int = 0) -> BlockConfig:
    """A DeciLM ``block_configs`` entry (``{"attention": {...}, "ffn": {...}}``) as a ``BlockConfig``.
    Accepts NVIDIA's full field set when the extra fields hold their neutral values.

    Raises:
        ValueError: a missing sub-block, an unknown field, or a field vLLM ignores set to
            anything but its neutral value (``replace_with_linear: true`` and the like).
    """
    if not isinstance(entry, Mapping) or set(entry) != {"attention", "ffn"}:
        raise ValueError(f"block {index}: expected a dict with exactly 'attention' and 'ffn', got {entry!r}")
    attn = _fields(entry["attention"], {"no_op", "n_heads_in_group"}, _ATTENTION_NEUTRAL, index, "attention")
    ffn = _fields(entry["ffn"], {"no_op", "ffn_mult", "intermediate_size"}, _FFN_NEUTRAL, index, "ffn")
    no_attn, no_ffn = bool(attn.get("no_op", False)), bool(ffn.get("no_op", False))
    return BlockConfig(
        attention=AttentionConfig("none") if no_attn else AttentionConfig("full", attn.get("n_heads_in_group")),
        ffn=FFNConfig("none") if no_ffn else FFNConfig("full", ffn.get("ffn_mult"), ffn.get("intermediate_size")),
    )


def _fields(sub: Any, used: set[str], neutral: Mapping[str, Any], index: int, name: str) -> dict[str, Any]:
    """The fields of one sub-block dict that matter, after refusing what cannot be served."""
    if not isinstance(sub, Mapping):
        raise ValueError(f"block {index}: {name} must be a dict, got {sub!r}")
    for key, value in sub.items():
        if key in neutral:
            if value != neutral[key]:
                raise ValueError(f"block {index}: {name}.{key}={value!r} is not supported (vLLM's DeciLM and "
                                 f"this module only compute {name}.{key}={neutral[key]!r})")
        elif key not in used:
            raise ValueError(f"block {index}: unknown {name} field {key!r}")
    if sub.get("no_op", False):
        # A no-op sub-block carries no size: NVIDIA writes null, anything else is a contradiction.
        extra = {k: sub[k] for k in used - {"no_op"} if sub.get(k) is not None}
        if extra:
            raise ValueError(f"block {index}: {name} is no_op but sets {extra}")
    return dict(sub)


# --- config.json ----------------------------------------------------------------------------------

def block_to_decilm(block: BlockConfig) -> dict[str, dict[str, Any]]:
    """A ``BlockConfig`` as the ``block_configs`` entry vLLM reads. An exact-width FFN is written
    without ``ffn_mult`` on purpose: vLLM uses ``ffn.intermediate_size`` only when ``ffn`` has no
    ``ffn_mult`` attribute (``hasattr`` in ``DeciLMDecoderLayer``)."""
    attn: dict[str, Any] = {"no_op": block.attention.kind == "none", "replace_with_linear": False,
                            "n_heads_in_group": block.attention.n_heads_in_group}
    ffn: dict[str, Any] = {"no_op": block.ffn.kind == "none", "replace_with_linear": False}
    if block.ffn.intermediate_size is not None:
        ffn["intermediate_size"] = block.ffn.intermediate_size
    else:
        ffn["ffn_mult"] = block.ffn.ffn_mult
    return {"attention": attn, "ffn": ffn}


def decilm_config(config: HeteroLlamaConfig) -> dict[str, Any]:
    """The ``config.json`` of ``config`` in the DeciLM format vLLM serves.

    ``intermediate_size`` and ``num_key_value_heads`` are informational (the widest FFN, the most KV
    heads): transformers' strict ``LlamaConfig`` types them as integers, while vLLM's DeciLM reads the
    per-block values from ``block_configs``.
    """
    blocks = config.blocks
    kv = [config.num_attention_heads // b.attention.n_heads_in_group
          for b in blocks if b.attention.n_heads_in_group is not None]
    eos = list(config.eos_token_id) if isinstance(config.eos_token_id, tuple) else config.eos_token_id
    return {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        "auto_map": {"AutoConfig": f"{CONFIG_CODE_FILE.removesuffix('.py')}.DeciLMConfig"},
        "block_configs": [block_to_decilm(b) for b in blocks],
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": len(blocks),
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": max(kv),
        "head_dim": config.head_dim,
        "intermediate_size": max(b.ffn.width(config.hidden_size) for b in blocks),
        "hidden_act": "silu",
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": eos,
        "dtype": config.dtype,
    }


# The config class ``trust_remote_code`` loads (the ``auto_map`` of ``decilm_config``). It must stand
# alone (transformers copies it into its module cache), so it is kept here as source text.
CONFIGURATION_DECILM_PY = '''\
"""DeciLM ("nemotron-nas") config for transformers, written by rlplat.models.decilm.save_decilm.

vLLM's DeciLMForCausalLM reads ``config.block_configs[i].attention.no_op`` and friends as
attributes, so each block's JSON dicts become namespaces holding exactly the keys the file has
(vLLM picks ``ffn.intermediate_size`` only when ``ffn`` has no ``ffn_mult``).
"""

from types import SimpleNamespace

from transformers import LlamaConfig


def _namespace(value):
    return value if isinstance(value, SimpleNamespace) else SimpleNamespace(**value)


def _block(value):
    if isinstance(value, SimpleNamespace):
        return value
    return SimpleNamespace(attention=_namespace(value["attention"]), ffn=_namespace(value["ffn"]))


class DeciLMConfig(LlamaConfig):
    model_type = "nemotron-nas"

    def __init__(self, block_configs=None, **kwargs):
        super().__init__(**kwargs)
        self.block_configs = [_block(b) for b in (block_configs or [])]

    def to_dict(self):
        out = super().to_dict()
        out["block_configs"] = [{"attention": dict(vars(b.attention)), "ffn": dict(vars(b.ffn))}
                                for b in self.block_configs]
        return out
'''


def write_decilm_config(config: HeteroLlamaConfig, out_dir: str | Path) -> Path:
    """Write ``config.json`` and ``configuration_decilm.py`` of ``config`` into ``out_dir`` (created);
    returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(json.dumps(decilm_config(config), indent=2) + "\n")
    (out / CONFIG_CODE_FILE).write_text(CONFIGURATION_DECILM_PY)
    return out


def read_decilm_config(path: str | Path) -> HeteroLlamaConfig:
    """The ``HeteroLlamaConfig`` of a DeciLM directory (or its ``config.json``), read as plain JSON.

    Raises:
        ValueError: another architecture, a layer count that differs from ``block_configs``, or a
            feature this module does not compute (tied embeddings, biases, a non-SiLU activation,
            scaled RoPE, a head size other than ``hidden_size // num_attention_heads``), or a bad block.
    """
    p = Path(path)
    raw = json.loads((p / CONFIG_FILE if p.is_dir() else p).read_text())
    if raw.get("architectures") != [ARCHITECTURE]:
        raise ValueError(f"{p}: architectures must be [{ARCHITECTURE!r}], got {raw.get('architectures')!r}")
    blocks = raw.get("block_configs") or []
    if raw.get("num_hidden_layers") != len(blocks):
        raise ValueError(f"{p}: num_hidden_layers {raw.get('num_hidden_layers')} but {len(blocks)} block_configs")
    _check_llama_features(raw, str(p))
    eos = raw.get("eos_token_id")
    return HeteroLlamaConfig(
        vocab_size=raw["vocab_size"], hidden_size=raw["hidden_size"], num_attention_heads=raw["num_attention_heads"],
        blocks=validate_blocks(raw["hidden_size"], raw["num_attention_heads"], blocks),
        max_position_embeddings=raw.get("max_position_embeddings", 2048), rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
        rope_theta=_rope_theta(raw), pad_token_id=raw.get("pad_token_id"), bos_token_id=raw.get("bos_token_id"),
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        dtype=str(raw.get("dtype") or raw.get("torch_dtype") or "float32"),
    )


def _rope_theta(raw: Mapping[str, Any]) -> float:
    params = raw.get("rope_parameters") or {}
    return float(params.get("rope_theta", raw.get("rope_theta", 10000.0)))


def _check_llama_features(raw: Mapping[str, Any], where: str) -> None:
    """Refuse Llama options this module does not implement (it would compute another function)."""
    unsupported = {
        "tie_word_embeddings": bool(raw.get("tie_word_embeddings", False)),
        "attention_bias": bool(raw.get("attention_bias", False)),
        "mlp_bias": bool(raw.get("mlp_bias", False)),
        "hidden_act": raw.get("hidden_act", "silu") != "silu",
        "pretraining_tp": (raw.get("pretraining_tp") or 1) != 1,
    }
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    unsupported["rope_parameters"] = rope.get("rope_type", rope.get("type", "default")) != "default"
    head_dim = raw.get("head_dim")
    heads = raw.get("num_attention_heads") or 1
    unsupported["head_dim"] = head_dim is not None and head_dim != raw.get("hidden_size", 0) // heads
    bad = sorted(k for k, v in unsupported.items() if v)
    if bad:
        raise ValueError(f"{where}: unsupported Llama options {', '.join(f'{k}={raw.get(k)!r}' for k in bad)}")


# --- the module -----------------------------------------------------------------------------------

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
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim))


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
        if self.lm_head.weight.device.type != "meta":
            self._init_weights(init_std)
        self.to(getattr(torch, config.dtype))

    def _init_weights(self, std: float) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=std)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)

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


@torch.no_grad()
def greedy_decode(model: HeteroLlamaForCausalLM, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
    """The ``max_new_tokens`` tokens argmax decoding appends to ``prompt_ids`` (no early stop at EOS;
    each step recomputes the whole sequence: a reference, not a server)."""
    device = model.lm_head.weight.device
    ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
    for _ in range(max_new_tokens):
        nxt = model(ids).logits[:, -1].argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids[0, len(prompt_ids):].tolist()


# --- save, load, convert --------------------------------------------------------------------------

def save_decilm(model: HeteroLlamaForCausalLM, out_dir: str | Path) -> Path:
    """Write ``model`` to ``out_dir`` (created) as ``config.json``, ``configuration_decilm.py`` and
    ``model.safetensors``; returns the directory. Copy a tokenizer in beside it
    (``rlplat.models.hf.copy_tokenizer``) before serving it: vLLM loads it with
    ``trust_remote_code=True``."""
    from safetensors.torch import save_file

    out = write_decilm_config(model.config, out_dir)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    return out


def _load_tensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a directory's ``model.safetensors``, or of the shards its index names."""
    from safetensors.torch import load_file

    index = path / f"{WEIGHTS_FILE}.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(str(path / shard)).items()}
    return load_file(str(path / WEIGHTS_FILE))


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
    _check_llama_features(raw, "from_llama")
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
        max_position_embeddings=hf.max_position_embeddings, rms_norm_eps=hf.rms_norm_eps, rope_theta=_rope_theta(raw),
        pad_token_id=hf.pad_token_id, bos_token_id=hf.bos_token_id,
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        dtype=str(weight.dtype).removeprefix("torch."),
    )
    with torch.device("meta"):
        model = HeteroLlamaForCausalLM(config)
    state = {k: v.detach().clone() for k, v in module.state_dict().items() if not k.endswith("rotary_emb.inv_freq")}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(weight.device).eval()
