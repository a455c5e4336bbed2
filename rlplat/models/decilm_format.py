"""The DeciLM format of a heterogeneous Llama (a Puzzle NAS / FFN Fusion child): per-block
configs, vLLM's FFN width rule, validation, and ``config.json`` as vLLM's ``DeciLMForCausalLM``
reads it (``rlplat.models.decilm`` holds the torch module; see its docstring for the format).

Plain Python and JSON: no torch, vLLM, Ray or DeepSpeed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

AttentionKind = Literal["full", "none"]
FFNKind = Literal["full", "none"]

CONFIG_FILE = "config.json"
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
        check_block(block, hidden_size, num_heads, i)
    _check_order(parsed)
    return parsed


def check_block(block: BlockConfig, hidden_size: int, num_heads: int, index: int = 0) -> None:
    """``validate_blocks``'s checks of one block on its own (not its place in the model).

    Raises:
        ValueError: naming block ``index`` and the field.
    """
    _check_attention(block.attention, num_heads, index)
    _check_ffn(block.ffn, hidden_size, index)


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


def is_decilm(path: str | Path) -> bool:
    """Whether model directory ``path`` holds a DeciLM (heterogeneous) model; False when it has no
    readable ``config.json``."""
    try:
        raw = json.loads((Path(path) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return bool(raw.get("architectures") == [ARCHITECTURE])


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
    check_llama_features(raw, str(p))
    eos = raw.get("eos_token_id")
    return HeteroLlamaConfig(
        vocab_size=raw["vocab_size"], hidden_size=raw["hidden_size"], num_attention_heads=raw["num_attention_heads"],
        blocks=validate_blocks(raw["hidden_size"], raw["num_attention_heads"], blocks),
        max_position_embeddings=raw.get("max_position_embeddings", 2048), rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
        rope_theta=rope_theta_of(raw), pad_token_id=raw.get("pad_token_id"), bos_token_id=raw.get("bos_token_id"),
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        dtype=str(raw.get("dtype") or raw.get("torch_dtype") or "float32"),
    )


def rope_theta_of(raw: Mapping[str, Any]) -> float:
    params = raw.get("rope_parameters") or {}
    return float(params.get("rope_theta", raw.get("rope_theta", 10000.0)))


def check_llama_features(raw: Mapping[str, Any], where: str) -> None:
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
