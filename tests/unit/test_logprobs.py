"""Chunked token log-probs and entropy (rlplat.algo.logprobs) against plain fp64 references (CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from rlplat.algo.logprobs import default_chunk_tokens, entropy_from_logits, token_logprobs

B, T, V = 3, 5, 11  # B * T = 15 tokens: chunk sizes 4 and 7 do not divide it, 5 and 15 do


def _ref_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.log_softmax(logits.double() / temperature, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _ref_entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    logp = torch.log_softmax(logits.double() / temperature, -1)
    return -(logp.exp() * logp).sum(-1)


def _case(dtype: torch.dtype, seed: int = 0, shape: tuple[int, int, int] = (B, T, V)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(*shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    targets = torch.randint(0, shape[-1], shape[:-1], generator=g)
    return logits, targets


_TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 1e-5, torch.float16: 1e-5}
_OUT_DTYPE = {torch.float64: torch.float64, torch.float32: torch.float32, torch.bfloat16: torch.float32,
              torch.float16: torch.float32}
_CHUNKS = [None, 1, 4, 5, 7, 15, 64]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("temperature", [1.0, 0.6, 1.7])
@pytest.mark.parametrize("chunk", _CHUNKS)
def test_logprobs_match_reference(dtype: torch.dtype, temperature: float, chunk: int | None) -> None:
    logits, targets = _case(dtype)
    out = token_logprobs(logits, targets, temperature, chunk_tokens=chunk)
    assert out.dtype == _OUT_DTYPE[dtype]
    assert out.shape == (B, T)
    # The reference sees the same (rounded) 16-bit values in fp64, so only fp32 rounding remains.
    tol = _TOL[dtype]
    torch.testing.assert_close(out.double(), _ref_logprobs(logits, targets, temperature), atol=tol, rtol=tol)


@pytest.mark.parametrize("chunk", [1, 3, 4, 7, 100])
def test_logprobs_of_a_strided_view(chunk: int) -> None:
    """The learner passes ``logits[:, :-1]``, which cannot be flattened without a copy."""
    full, _ = _case(torch.bfloat16, seed=3, shape=(B, T + 1, V))
    logits = full[:, :-1]
    assert not logits.is_contiguous()
    targets = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(4))
    out = token_logprobs(logits, targets, 0.8, chunk_tokens=chunk)
    torch.testing.assert_close(out.double(), _ref_logprobs(logits, targets, 0.8), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        entropy_from_logits(logits, 0.8, chunk_tokens=chunk).double(), _ref_entropy(logits, 0.8), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize(("temperature", "chunk", "sliced"), [(1.0, 4, False), (0.7, 4, True), (1.3, 1, False)])
def test_gradcheck_fp64(temperature: float, chunk: int, sliced: bool) -> None:
    g = torch.Generator().manual_seed(5)
    full = torch.randn(2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 5, (2, 3 if sliced else 4), generator=g)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return token_logprobs(x[:, :-1] if sliced else x, targets, temperature, chunk_tokens=chunk)

    assert torch.autograd.gradcheck(fn, (full,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("chunk", [None, 4, 7])
@pytest.mark.parametrize("sliced", [False, True])
def test_grads_match_reference_fp32(temperature: float, chunk: int | None, sliced: bool) -> None:
    full, targets = _case(torch.float32, seed=6, shape=(B, T + 1, V))
    targets = targets[:, :-1]
    # A different weight per token, so a gradient routed to the wrong token or chunk shows up.
    weights = torch.randn(B, T, generator=torch.Generator().manual_seed(7))
    grads = []
    for impl in ("ours", "ref"):
        leaf = full.clone().requires_grad_()
        x = leaf[:, :-1] if sliced else leaf[:, 1:].contiguous()
        if impl == "ours":
            lp = token_logprobs(x, targets, temperature, chunk_tokens=chunk)
        else:
            lp = torch.log_softmax(x / temperature, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        (lp * weights).sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_grads_bf16_are_bf16_and_close_to_reference() -> None:
    logits, targets = _case(torch.bfloat16, seed=8)
    leaf = logits.clone().requires_grad_()
    weights = torch.randn(B, T, generator=torch.Generator().manual_seed(9))
    (token_logprobs(leaf, targets, 0.9, chunk_tokens=4) * weights).sum().backward()
    assert leaf.grad is not None and leaf.grad.dtype == torch.bfloat16
    ref = logits.double().requires_grad_()
    (_ref_logprobs(ref, targets, 0.9) * weights.double()).sum().backward()
    assert ref.grad is not None
    # Only the final rounding to bf16 (8 bits of mantissa) separates them.
    torch.testing.assert_close(leaf.grad.double(), ref.grad, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.6, 1.7])
@pytest.mark.parametrize("chunk", _CHUNKS)
def test_entropy_matches_reference(dtype: torch.dtype, temperature: float, chunk: int | None) -> None:
    logits, _ = _case(dtype, seed=10)
    out = entropy_from_logits(logits, temperature, chunk_tokens=chunk)
    assert out.dtype == _OUT_DTYPE[dtype]
    tol = _TOL[dtype]
    torch.testing.assert_close(out.double(), _ref_entropy(logits, temperature), atol=tol, rtol=tol)


def test_entropy_is_a_statistic_without_grad() -> None:
    logits, _ = _case(torch.float32, seed=11)
    out = entropy_from_logits(logits.requires_grad_())
    assert not out.requires_grad


def test_temperature_changes_entropy_in_the_right_direction() -> None:
    logits, _ = _case(torch.float32, seed=12)
    cold, hot = entropy_from_logits(logits, 0.5), entropy_from_logits(logits, 2.0)
    assert (cold < entropy_from_logits(logits)).all() and (hot > entropy_from_logits(logits)).all()
    assert (hot <= math.log(V) + 1e-6).all()


def test_rejects_bad_arguments() -> None:
    logits, targets = _case(torch.float32)
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(logits, targets, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        entropy_from_logits(logits, -1.0)
    with pytest.raises(ValueError, match="chunk_tokens"):
        token_logprobs(logits, targets, chunk_tokens=0)
    with pytest.raises(ValueError, match="targets"):
        token_logprobs(logits, targets[:, :-1])
    with pytest.raises(TypeError, match="floating"):
        token_logprobs(targets.unsqueeze(-1), targets)


def test_default_chunk_size() -> None:
    assert default_chunk_tokens(128_256) == 65  # 2**23 logits: 32 MiB of fp32 at Llama 3's vocabulary
    assert default_chunk_tokens(1 << 30) == 1
    assert default_chunk_tokens(5000) == (1 << 23) // 5000


# ---------------------------------------------------------------------------------------------
# Memory: what autograd keeps for backward
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 16])
def test_backward_saves_no_full_size_fp32_copy(chunk: int | None) -> None:
    """Saved tensors of ``token_logprobs(bf16).sum()``: the bf16 logits themselves plus per-token data.

    A row-wise (or whole-tensor) fp32 upcast inside autograd saves fp32 copies whose total equals
    the full ``[B, T, V]`` logits in fp32, twice the bf16 logits; that must not happen.
    """
    b, t, v = 4, 64, 5000
    logits = torch.randn(b, t, v).to(torch.bfloat16).requires_grad_()
    targets = torch.randint(0, v, (b, t), generator=torch.Generator().manual_seed(13))
    saved: list[tuple[torch.dtype, int, int, bool]] = []
    storage = logits.untyped_storage().data_ptr()

    def pack(x: torch.Tensor) -> torch.Tensor:
        shares_logits = x.untyped_storage().data_ptr() == storage
        saved.append((x.dtype, x.numel(), x.numel() * x.element_size(), shares_logits))
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        loss = token_logprobs(logits, targets, chunk_tokens=chunk).sum()
    loss.backward()  # the saved tensors are enough for backward
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()

    chunk_elems = (chunk if chunk is not None else default_chunk_tokens(v)) * v
    big = [s for s in saved if s[0] in (torch.float32, torch.float64) and s[1] > chunk_elems]
    assert not big, f"saved fp32/fp64 tensors larger than one chunk ({chunk_elems} elements): {big}"
    total = sum(s[2] for s in saved)
    # The bf16 logits (saved by reference, not copied) plus targets (int64) and logsumexp (fp32).
    per_token = b * t * (8 + 4)
    budget = logits.numel() * logits.element_size() + per_token
    assert total <= budget, f"saved {total} bytes for backward, budget {budget}: {saved}"
    copies = sum(s[2] for s in saved if not s[3])
    assert copies <= per_token, f"saved {copies} bytes besides the logits themselves: {saved}"
