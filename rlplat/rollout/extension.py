"""vLLM worker extension that loads rlplat weight buckets into a live engine.

vLLM mixes this class into its worker (``worker_extension_cls``); ``LLM.collective_rpc`` calls its
methods inside every engine worker process. It goes through ``reload_weights``, not
``model.load_weights``: on CPU the backend repacks linear weights after loading and empties the
originals, so only the reload path (which reruns post-load processing) gives correct outputs;
the same path re-quantises FP8 engines on GPU.

FP8 buckets (``rollout.precision=fp8``) hold e4m3 linear weights with their scales; they are
dequantized here into the engine's dtype, so a CPU engine (no FP8 kernels) computes with
FP8-rounded weights (emulation), and a GPU FP8 engine re-quantises them on reload, which gives
back the same FP8 values (the per-tensor scale of an FP8-rounded tensor is its own).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from rlplat.sync.fp8 import dequantized_items
from rlplat.sync.transport import iter_weights
from rlplat.types import BucketSpec


class WeightReceiver:
    """Methods added to each vLLM worker."""

    def rlplat_load_buckets(self, specs: Sequence[BucketSpec], paths: Sequence[str], dtype: str,
                            wait_s: float = 0.0) -> int:
        """Load all tensors of the bucket files at ``paths`` (FP8 weights dequantized into ``dtype``);
        returns the number of tensors loaded. ``wait_s`` > 0: streamed, the files appear while the
        engine loads the earlier ones (vLLM's layerwise reload processes each layer as its weights
        arrive)."""
        count = 0

        def counted() -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal count
            for item in dequantized_items(iter_weights(specs, paths, wait_s), getattr(torch, dtype)):
                count += 1
                yield item

        self.reload_weights(weights_iterator=counted())  # type: ignore[attr-defined]
        return count
