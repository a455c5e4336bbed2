"""vLLM worker extension that loads rlplat weight buckets into a live engine.

vLLM mixes this class into its worker (``worker_extension_cls``); ``LLM.collective_rpc`` calls its
methods inside every engine worker process. It goes through ``reload_weights``, not
``model.load_weights``: on CPU the backend repacks linear weights after loading and empties the
originals, so only the reload path (which reruns post-load processing) gives correct outputs;
the same path re-quantises FP8 engines on GPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from rlplat.sync.transport import iter_weights
from rlplat.types import BucketSpec


class WeightReceiver:
    """Methods added to each vLLM worker."""

    def rlplat_load_buckets(self, specs: Sequence[BucketSpec], paths: Sequence[str]) -> int:
        """Load all tensors of the bucket files at ``paths``; returns the number of tensors."""
        count = 0

        def counted() -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal count
            for item in iter_weights(specs, paths):
                count += 1
                yield item

        self.reload_weights(weights_iterator=counted())  # type: ignore[attr-defined]
        return count
