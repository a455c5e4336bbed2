"""rlplat's bucket files as a vLLM weight-transfer engine (backend ``rlplat_shm``).

vLLM's RL weight-transfer API has four phases, driven on the engine by ``LLM``'s methods and run in
every engine worker process: ``init_weight_transfer_engine`` (once), then per update
``start_weight_update``, one or more ``update_weights`` chunks, ``finish_weight_update``. Its
built-in backends move GPU tensors (``ipc``: CUDA IPC handles; ``nccl``: a broadcast). This backend
moves rlplat's weight buckets: files in /dev/shm that the learners write (``rlplat.sync``), read
as they appear when the sync is streamed, FP8 payloads dequantized into the engine's dtype. It is
what CPU engines use, and GPU engines on nodes that have no learner.

``register`` adds the backend to vLLM's ``WeightTransferEngineFactory``. It is a vLLM general
plugin (``vllm.general_plugins`` entry point in pyproject.toml), so every vLLM process of the
environment, TP workers included, registers it before building a worker; the rollout worker also
calls it before building its engine, for an environment where rlplat is importable but not
installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vllm.distributed.weight_transfer import WeightTransferEngineFactory
from vllm.distributed.weight_transfer.base import (
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)

from rlplat.sync.fp8 import dequantized_items
from rlplat.sync.plan import BUCKETS
from rlplat.sync.transport import iter_weights
from rlplat.types import BucketSpec


@dataclass
class ShmInitInfo(WeightTransferInitInfo):
    """Nothing to rendezvous: the engine reads files whose names each update gives."""


@dataclass
class ShmUpdateInfo(WeightTransferUpdateInfo):
    """One update chunk: bucket files and their layouts, in order.

    Attributes:
        specs: Layout of each bucket file.
        paths: The bucket files on this engine's node.
        wait_s: > 0 (streamed sync): the files may not exist yet; wait for each, up to this long in
            all, and stop at the export's abort marker (``rlplat.sync.transport``).
    """

    specs: Sequence[BucketSpec]
    paths: Sequence[str]
    wait_s: float = 0.0


class ShmBucketEngine(WeightTransferEngine[ShmInitInfo, ShmUpdateInfo]):
    """Loads bucket files into the worker's model through vLLM's layerwise reload.

    Weights arrive in checkpoint format, so ``start_weight_update`` begins a layerwise reload and
    ``finish_weight_update`` ends it: vLLM then reruns the post-load processing of each layer (on
    CPU it repacks linear weights for its kernels and empties the loaded originals, so a plain
    ``load_weights`` would leave the engine computing with stale packed copies).
    """

    init_info_cls = ShmInitInfo
    update_info_cls = ShmUpdateInfo
    supports_draft_weight_update = False

    def init_transfer_engine(self, init_info: ShmInitInfo) -> None:
        """No connection to open: each update names its files."""

    def start_weight_update(self) -> None:
        """Begin vLLM's layerwise reload of the model."""
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def update_weights(self, update_info: dict[str, Any]) -> None:
        """Load one chunk. Unlike the base class, no device synchronize: reading files is
        synchronous, and ``torch.accelerator.synchronize`` raises where there is no accelerator
        (vLLM's CPU backend)."""
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: ShmUpdateInfo) -> None:
        """Read every tensor of the chunk's buckets into the model (FP8 ones dequantized)."""
        items = iter_weights(update_info.specs, update_info.paths, update_info.wait_s)
        self.model.load_weights(dequantized_items(items, self.model_config.dtype))

    def finish_weight_update(self) -> None:
        """End the layerwise reload: every layer's weights are processed for the kernels."""
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        finalize_layerwise_reload(self.model, self.model_config)
        reprocess_tied_head(self.model)

    def shutdown(self) -> None:
        """Nothing held between updates."""


def reprocess_tied_head(model: Any) -> None:
    """Process a tied LM head again after a reload (Qwen2, Qwen3, Gemma: ``tie_word_embeddings``).

    The head shares the embedding's storage, but no checkpoint tensor is its own (the model's
    ``load_weights`` drops ``lm_head.weight``), so vLLM's layerwise reload leaves it as it was: on
    CPU its kernels kept computing logits with the old weights (greedy outputs differed from the
    learner's after the first sync). Running its processing again from the shared, just loaded
    weights fixes it; an untied head (its own weights, reloaded) is left alone.
    """
    head = getattr(model, "lm_head", None)
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    if head is None or embed is None or head is embed:
        return
    head_w, embed_w = getattr(head, "weight", None), getattr(embed, "weight", None)
    if head_w is None or embed_w is None or head_w.data_ptr() != embed_w.data_ptr():
        return
    method = getattr(head, "quant_method", None)
    if method is not None:
        method.process_weights_after_loading(head)


def register() -> None:
    """Add ``rlplat_shm`` to vLLM's weight-transfer backends (idempotent: the plugin entry point and
    the rollout worker may both call it in one process)."""
    if BUCKETS not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine(BUCKETS, ShmBucketEngine)
