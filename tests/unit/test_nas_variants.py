"""The variants the NAS stage offers each layer: only KV-head counts that merge the parent's heads,
only FFNs narrower than the parent's, and an attention at layer 0 (vLLM's DeciLM needs one first)."""

from __future__ import annotations

from rlplat.config.schema import NASConfig
from rlplat.models.decilm_format import AttentionConfig, BlockConfig, FFNConfig
from rlplat.stages.nas import layer_variants

# 8 heads with 4 KV heads (n_heads_in_group 2); FFN width 1536 at hidden 512 (ffn_mult 4.5).
PARENT = BlockConfig(AttentionConfig("full", 2), FFNConfig("full", ffn_mult=4.5))


def test_variants_merge_kv_heads_and_narrow_ffns() -> None:
    n = NASConfig(kv_heads=(8, 4, 3, 2, 1, 2), ffn_mults=(6.0, 3.0, 1.5, 4.5), no_attention=True, no_ffn=True)
    attention, ffn = layer_variants(PARENT, 1, num_heads=8, hidden_size=512, n=n)
    # 8 is more KV heads than the parent's, 4 is the parent's, 3 divides nothing: left out
    assert attention == [PARENT.attention, AttentionConfig("full", 8), AttentionConfig("full", 4),
                         AttentionConfig("none")]
    # 6.0 is wider than the parent, 4.5 is the parent's own width
    assert ffn == [PARENT.ffn, FFNConfig("full", ffn_mult=1.5), FFNConfig("full", ffn_mult=3.0), FFNConfig("none")]


def test_layer_zero_keeps_its_attention() -> None:
    attention, _ = layer_variants(PARENT, 0, num_heads=8, hidden_size=512, n=NASConfig(no_attention=True))
    assert AttentionConfig("none") not in attention
