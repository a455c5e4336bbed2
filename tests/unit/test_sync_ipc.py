"""The CUDA IPC side of the weight sync that needs no GPU: which backend a run's engines use, and
how the learner ranks' handles merge into the one update every engine reads (tests/gpu checks the
handles themselves between two processes)."""

from __future__ import annotations

import pytest

from rlplat.config.schema import SyncConfig
from rlplat.sync.ipc import IpcExport, merge_exports
from rlplat.sync.plan import BUCKETS, IPC, transfer_backend


def test_co_located_gpu_engines_take_cuda_ipc_and_every_other_engine_bucket_files() -> None:
    auto = SyncConfig()
    assert transfer_backend(auto, "gpu", colocate=True) == IPC
    assert transfer_backend(auto, "gpu", colocate=False) == BUCKETS
    assert transfer_backend(auto, "cpu", colocate=True) == BUCKETS
    assert transfer_backend(SyncConfig(backend="buckets"), "gpu", colocate=True) == BUCKETS


def _rank(gpu: str, shapes: tuple[tuple[int, ...], ...] = ((4, 2), (3,))) -> IpcExport:
    names = tuple(f"w{i}" for i in range(len(shapes)))
    return IpcExport(names, ("bfloat16",) * len(shapes), shapes, tuple({gpu: (gpu, i)} for i in range(len(shapes))))


def test_each_tensor_carries_the_handle_of_every_learner_gpu() -> None:
    merged = merge_exports([_rank("GPU-a"), _rank("GPU-b")])
    assert merged.handles == ({"GPU-a": ("GPU-a", 0), "GPU-b": ("GPU-b", 0)},
                              {"GPU-a": ("GPU-a", 1), "GPU-b": ("GPU-b", 1)})
    info = merged.update_info()  # vLLM's IPCWeightTransferUpdateInfo fields
    assert info["names"] == ["w0", "w1"] and info["shapes"] == [[4, 2], [3]]
    assert info["dtype_names"] == ["bfloat16", "bfloat16"] and len(info["ipc_handles"]) == 2
    assert merged.nbytes == (8 + 3) * 2


def test_ranks_that_disagree_or_share_a_gpu_are_refused() -> None:
    with pytest.raises(ValueError, match="other tensors"):
        merge_exports([_rank("GPU-a"), _rank("GPU-b", shapes=((4, 2), (5,)))])
    with pytest.raises(ValueError, match="one learner per GPU"):
        merge_exports([_rank("GPU-a"), _rank("GPU-a")])
    with pytest.raises(ValueError):
        merge_exports([])
