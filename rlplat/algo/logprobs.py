"""Token log-probabilities and entropy from logits, in chunks of tokens (memory-bounded).

Shapes: ``B`` sequences, ``T`` positions, ``V`` vocabulary. Logits are ``[B, T, V]`` in any float
dtype; the model's bf16 logits are the largest tensor of a training step at a real vocabulary
(8 x 4096 x 128k bf16 is about 8 GiB), so nothing here materialises, or saves for backward, an fp32 tensor
of that size. Instead each function walks the flattened ``B * T`` tokens in chunks of
``chunk_tokens``: a chunk is upcast to fp32 (fp64 stays fp64), divided by the temperature, reduced,
and dropped before the next one. The fp32 accuracy matters because the policy ratio exponentiates a
difference of log-probabilities.

Inputs do not need to be contiguous: the learner passes ``logits[:, :-1]`` (a strided view), and a
chunk that spans two sequences is assembled from per-row views instead of copying the whole tensor.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# A chunk holds about 2**23 logits: 32 MiB in fp32, i.e. 65 tokens at Llama 3's V = 128256. That is
# small next to the bf16 logits (GiBs) and to the few chunk-sized fp32 transients a step needs at
# once (upcast copy, exp, softmax), yet large enough that each of the handful of kernels per chunk
# still fills a GPU, so the Python loop over chunks costs little over one fused call.
DEFAULT_CHUNK_ELEMENTS = 1 << 23


def default_chunk_tokens(vocab_size: int) -> int:
    """Tokens per chunk when ``chunk_tokens`` is None: ``DEFAULT_CHUNK_ELEMENTS // vocab_size``, at least 1."""
    return max(1, DEFAULT_CHUNK_ELEMENTS // max(vocab_size, 1))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # fp64 is kept for exact references (gradcheck); every other float dtype is reduced in fp32.
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_args(logits: Tensor, temperature: float, chunk_tokens: int | None) -> int:
    """Validate the shared arguments and return the resolved tokens per chunk."""
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
    if logits.dim() < 2:
        raise ValueError(f"logits must be [..., V] with at least 2 dims, got shape {tuple(logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_tokens is None:
        return default_chunk_tokens(logits.shape[-1])
    if chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens must be > 0 when given, got {chunk_tokens}")
    return chunk_tokens


def _as_3d(logits: Tensor) -> Tensor:
    """``[..., T, V]`` -> ``[N, T, V]`` (a view for ``[B, T, V]``, the learner's case)."""
    if logits.dim() == 2:
        return logits.unsqueeze(0)
    if logits.dim() == 3:
        return logits
    return logits.flatten(0, -3)


def _chunks(logits3: Tensor, chunk_tokens: int) -> Iterator[tuple[int, int, Tensor]]:
    """Yield ``(start, end, rows)`` over the flattened tokens of ``logits3`` (``[N, T, V]``).

    ``rows`` is the ``[end - start, V]`` slice of ``logits3.reshape(-1, V)``, in the logits' dtype.
    It is a view when the tokens can be flattened without a copy; otherwise (e.g. ``logits[:, :-1]``)
    the chunk alone is assembled from per-sequence views, so no more than one chunk is copied at a
    time. (Logits with more than 3 dims are flattened to 3 first, which may copy them.)
    """
    n, t, v = logits3.shape
    total = n * t
    try:
        flat: Tensor | None = logits3.view(total, v)
    except RuntimeError:  # strides do not allow flattening: fall back to per-chunk assembly
        flat = None
    for start in range(0, total, chunk_tokens):
        end = min(start + chunk_tokens, total)
        if flat is not None:
            yield start, end, flat[start:end]
            continue
        b0, t0 = divmod(start, t)
        b1, t1 = divmod(end, t)
        if b0 == b1:
            yield start, end, logits3[b0, t0:t1]
            continue
        pieces = [logits3[b0, t0:]] + [logits3[b] for b in range(b0 + 1, b1)]
        if t1:
            pieces.append(logits3[b1, :t1])
        yield start, end, torch.cat(pieces)


class _TokenLogprobs(torch.autograd.Function):
    """``log_softmax(logits / temperature)`` at the targets, chunked in forward and backward.

    Saves only the input logits themselves (no copy), the flattened targets and the per-token
    logsumexp; backward recomputes each chunk's softmax from them.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, temperature: float, chunk_tokens: int) -> Tensor:
        logits3 = _as_3d(logits)
        cdtype = _compute_dtype(logits.dtype)
        flat_targets = targets.reshape(-1, 1)
        out = torch.empty(targets.shape, dtype=cdtype, device=logits.device)
        flat_out = out.view(-1)
        lse = torch.empty(flat_targets.shape[0], dtype=cdtype, device=logits.device)
        for start, end, rows in _chunks(logits3, chunk_tokens):
            # Only this chunk is upcast (the division allocates it even for fp32 logits).
            x = rows.to(cdtype) / temperature
            chunk_lse = torch.logsumexp(x, dim=-1)
            lse[start:end] = chunk_lse
            flat_out[start:end] = x.gather(-1, flat_targets[start:end]).squeeze(-1) - chunk_lse
            del x  # free the chunk before the next one is allocated, not after
        ctx.save_for_backward(logits, flat_targets, lse)
        ctx.temperature = temperature
        ctx.chunk_tokens = chunk_tokens
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None]:
        logits, flat_targets, lse = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        temperature: float = ctx.temperature
        cdtype = lse.dtype
        # d lp / d logits_v = (onehot(target)_v - softmax(logits / T)_v) / T.
        scale = grad_out.reshape(-1, 1).to(cdtype) / temperature
        # Contiguous, in the logits' dtype: the only full-size tensor of the backward pass, and
        # the same size autograd would allocate for the logits' gradient anyway.
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        grad_flat = grad.view(-1, logits.shape[-1])
        for start, end, rows in _chunks(_as_3d(logits), ctx.chunk_tokens):
            x = rows.to(cdtype) / temperature  # fresh chunk, so the in-place ops below are safe
            p = x.sub_(lse[start:end].unsqueeze(-1)).exp_()  # softmax from the saved logsumexp
            s = scale[start:end]
            p.mul_(-s).scatter_add_(-1, flat_targets[start:end], s)
            grad_flat[start:end] = p  # downcast into the logits' dtype
            del x, p
        return grad, None, None, None


def token_logprobs(
    logits: Tensor, targets: Tensor, temperature: float = 1.0, chunk_tokens: int | None = None
) -> Tensor:
    """Log-probability of each target under ``softmax(logits / temperature)``, computed in chunks.

    Equal to ``log_softmax(logits.double() / temperature, -1).gather(-1, targets[..., None])``
    up to the compute dtype's rounding, but the forward pass holds only one upcast chunk at a time
    and autograd saves only ``logits`` itself (not a copy), ``targets`` and the ``[B * T]``
    per-token logsumexp. Backward recomputes each chunk's softmax and writes
    ``(onehot(target) - softmax) * grad / temperature`` into a gradient in the logits' dtype. Pass
    the raw (possibly bf16) logits and the sampling temperature: upcasting or dividing them first
    would materialise the full-size fp32 tensor this function exists to avoid. Callers align the
    shift themselves (``logits[:, :-1]`` with ``ids[:, 1:]``); non-contiguous views are fine.
    Differentiable once w.r.t. ``logits`` (no double backward).

    Args:
        logits: ``[B, T, V]`` logits, any float dtype (fp32, bf16, fp16, fp64), any strides.
        targets: ``[B, T]`` int64 token ids in ``[0, V)``.
        temperature: Sampling temperature, > 0; the log-probs are those of ``softmax(logits / T)``.
        chunk_tokens: Tokens per chunk; None picks ``default_chunk_tokens(V)`` (~32 MiB of fp32).

    Returns:
        ``[B, T]`` log-probabilities: fp64 for fp64 logits, otherwise fp32.

    Raises:
        TypeError: non-float logits. ValueError: shape mismatch, ``temperature <= 0`` or
            ``chunk_tokens <= 0``.
    """
    chunk = _check_args(logits, temperature, chunk_tokens)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets {tuple(targets.shape)} must match logits {tuple(logits.shape)} without V")
    # torch types ``Function.apply`` as untyped; the result is the forward's ``Tensor``.
    out: Tensor = _TokenLogprobs.apply(logits, targets, float(temperature), chunk)  # type: ignore[no-untyped-call]
    return out


@torch.no_grad()
def entropy_from_logits(logits: Tensor, temperature: float = 1.0, chunk_tokens: int | None = None) -> Tensor:
    """Entropy (nats) of ``softmax(logits / temperature)`` at each position, computed in chunks.

    A statistic, not a loss term: it runs under ``torch.no_grad`` and the result never requires
    grad (add an entropy bonus with a differentiable formula if one is ever needed). Only one
    upcast chunk is alive at a time. Uses ``H = logsumexp(x) - sum_v softmax(x)_v * x_v`` with
    ``x = logits / T``, which needs no ``log`` of underflowed probabilities; logits must be finite.

    Args:
        logits: ``[B, T, V]`` logits, any float dtype, any strides.
        temperature: Sampling temperature, > 0.
        chunk_tokens: Tokens per chunk; None picks ``default_chunk_tokens(V)``.

    Returns:
        ``[B, T]`` entropies, fp32 (fp64 for fp64 logits); uniform over ``V`` tokens gives ``log V``.
    """
    chunk = _check_args(logits, temperature, chunk_tokens)
    cdtype = _compute_dtype(logits.dtype)
    out = torch.empty(logits.shape[:-1], dtype=cdtype, device=logits.device)
    flat_out = out.view(-1)
    for start, end, rows in _chunks(_as_3d(logits), chunk):
        x = rows.to(cdtype) / temperature
        lse = torch.logsumexp(x, dim=-1, keepdim=True)
        p = (x - lse).exp_()
        flat_out[start:end] = lse.squeeze(-1) - p.mul_(x).sum(-1)
        del x, p
    return out

