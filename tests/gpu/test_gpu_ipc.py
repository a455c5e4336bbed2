"""CUDA IPC between two processes, in the format of vLLM's ``ipc`` weight-transfer backend.

vLLM's ``IPCTrainerWeightTransferEngine`` (vllm/distributed/weight_transfer/ipc_engine.py, vLLM
0.32.0) sends, for each weight, ``torch.multiprocessing.reductions.reduce_tensor``'s rebuild
arguments in a dict keyed by the physical GPU's UUID (``str(get_device_properties(i).uuid)``), beside
the names, dtype names and shapes; over HTTP the handle list travels pickled and base64-encoded
(``ipc_handles_pickled``). rlplat's learners build exactly that (``rlplat.sync.ipc.export_ipc``). Its receiver looks up its own GPU's UUID, overwrites index 6 of the
arguments (the device index) with its own device's, and calls ``rebuild_cuda_tensor``. This test does
both halves in two processes (the receiver spawned, as an engine's worker is its own process) and
checks that the receiver reads the sender's values bit for bit, views at an offset into a larger
allocation included, and that it maps the sender's memory rather than a copy of it.
"""

from __future__ import annotations

import base64
import pickle
from typing import Any

import pytest
import torch
from torch.multiprocessing.reductions import rebuild_cuda_tensor

from rlplat.sync.ipc import export_ipc
from spawned import in_spawned_process

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
# Index of the device index in ``reduce_tensor``'s arguments for a CUDA tensor (what vLLM overwrites).
DEVICE_ARG = 6
# Index of the tensor's element offset in its storage.
OFFSET_ARG = 3
# What the receiver writes into the shared "scratch" tensor for the sender to see.
WRITTEN = 7.0
RECEIVER_TIMEOUT_S = 120.0


def _bits(t: torch.Tensor) -> bytes:
    """The raw bytes of ``t`` (equal only when bit for bit equal, float8 included)."""
    return bytes(t.detach().contiguous().flatten().view(torch.uint8).cpu().numpy())


def _rebuild_and_read(update: dict[str, Any]) -> dict[str, tuple[str, list[int], bytes]]:
    """vLLM's receiving side (``IPCWeightTransferEngine.receive_weights``, unpacked): each weight's
    dtype name, shape and bytes as rebuilt here; then ``WRITTEN`` written through ``scratch``."""
    handles = pickle.loads(base64.b64decode(update["ipc_handles_pickled"]))
    device = torch.cuda.current_device()
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    received: dict[str, tuple[str, list[int], bytes]] = {}
    rebuilt: dict[str, torch.Tensor] = {}
    for name, shape, handle in zip(update["names"], update["shapes"], handles, strict=True):
        if uuid not in handle:
            raise ValueError(f"IPC handle not found for GPU UUID {uuid}; available: {list(handle)}")
        args = list(handle[uuid])
        args[DEVICE_ARG] = device  # the receiver's own index for that GPU
        t = rebuild_cuda_tensor(*args)
        rebuilt[name] = t
        received[name] = (str(t.dtype).split(".")[-1], list(t.shape), _bits(t))
        if list(t.shape) != shape:
            raise ValueError(f"{name}: shape {list(t.shape)} rebuilt, {shape} announced")
    rebuilt["scratch"].fill_(WRITTEN)
    torch.cuda.synchronize()  # the write lands before the sender looks
    return received


def test_cuda_ipc_handles_in_vllm_s_format_rebuild_in_another_process() -> None:
    device = torch.cuda.current_device()
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    torch.manual_seed(0)
    bucket = torch.randn(4, 1024, device=CUDA)
    weights = {
        "model.layers.0.mlp.up_proj.weight": torch.randn(256, 128, device=CUDA, dtype=torch.bfloat16),
        "model.layers.0.mlp.down_proj.weight": (torch.randn(128, 256, device=CUDA) * 50).to(torch.float8_e4m3fn),
        "model.norm.weight": torch.randn(128, device=CUDA),
        "bucket.view": bucket[2],  # a view 2048 elements into a larger allocation
        "scratch": torch.zeros(64, device=CUDA),
    }
    # The sender's side is rlplat's (``rlplat.sync.ipc.export_ipc``, what a learner rank runs for
    # ``sync.backend=ipc``), in the format of vLLM's ``IPCTrainerWeightTransferEngine._send_unpacked``.
    # The caller keeps every shared tensor alive until the receiver is done: the handles do not.
    alive = [tensor.detach().contiguous() for tensor in weights.values()]
    export = export_ipc(zip(weights, alive, strict=True))
    names, dtype_names, handles = list(export.names), list(export.dtype_names), list(export.handles)
    assert all(h[uuid][DEVICE_ARG] == device for h in handles), "index 6 of the rebuild arguments is no longer the device index"
    assert handles[names.index("bucket.view")][uuid][OFFSET_ARG] == 2 * 1024  # the view's offset travels
    update = export.update_info()
    update["ipc_handles_pickled"] = base64.b64encode(pickle.dumps(update.pop("ipc_handles"))).decode()
    torch.cuda.synchronize()  # the values are written before another process reads them

    received = in_spawned_process(_rebuild_and_read, update, what="the receiving process",
                                  timeout_s=RECEIVER_TIMEOUT_S)

    assert list(received) == names
    for name, weight, dtype_name in zip(names, alive, dtype_names):
        got_dtype, got_shape, got_bytes = received[name]
        assert (got_dtype, got_shape) == (dtype_name, list(weight.shape)), name
        if name != "scratch":  # written by the receiver after reading
            assert got_bytes == _bits(weight), f"{name}: the receiver read other bytes"
    torch.cuda.synchronize()
    assert torch.equal(weights["scratch"], torch.full_like(weights["scratch"], WRITTEN)), (
        "the receiver's write did not reach the sender's tensor: it rebuilt a copy, not the shared memory")
    del alive
    torch.cuda.ipc_collect()  # as vLLM's sender does after a transfer: release the shared blocks
