"""CUDA IPC handles of learner weights, in the form vLLM's ``ipc`` weight-transfer backend reads.

A co-located engine shares its GPU with a learner rank. Instead of copying weights through host
memory, the learner hands the engine CUDA IPC handles to its own parameter tensors; vLLM's ``ipc``
backend (``vllm.distributed.weight_transfer.ipc_engine``) rebuilds each tensor in the engine process
and copies it into the engine's weights on the device. Each tensor's handles are keyed by the
physical GPU's UUID, so that one update serves every engine: each engine picks the handle of the GPU
it runs on. Nothing here imports vLLM: the format is plain data (names, dtypes, shapes, handles).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# Per tensor: GPU UUID -> the arguments of torch's ``rebuild_cuda_tensor`` for that GPU's copy.
Handles = dict[str, tuple[Any, ...]]


@dataclass(frozen=True)
class IpcExport:
    """One rank's (or, merged, every rank's) handles to a full set of weights, in send order."""

    names: tuple[str, ...]
    dtype_names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    handles: tuple[Handles, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors named (what each engine copies)."""
        return sum(math.prod(shape) * torch.empty((), dtype=getattr(torch, dtype)).element_size()
                   for shape, dtype in zip(self.shapes, self.dtype_names, strict=True))

    def update_info(self) -> dict[str, Any]:
        """vLLM's ``IPCWeightTransferUpdateInfo`` fields (unpacked: one handle dict per tensor)."""
        return {"names": list(self.names), "dtype_names": list(self.dtype_names),
                "shapes": [list(s) for s in self.shapes], "ipc_handles": [dict(h) for h in self.handles]}


def export_ipc(named: Iterable[tuple[str, torch.Tensor]]) -> IpcExport:
    """Handles to ``named`` CUDA tensors. The caller keeps the tensors alive (and unchanged) until
    every engine has finished loading them: a handle does not own the memory it names."""
    from torch.multiprocessing.reductions import reduce_tensor

    names, dtypes, shapes, handles = [], [], [], []
    for name, tensor in named:
        if tensor.device.type != "cuda":
            raise ValueError(f"CUDA IPC needs CUDA tensors; {name} is on {tensor.device}")
        uuid = str(torch.cuda.get_device_properties(tensor.device).uuid)
        _, args = reduce_tensor(tensor.detach())  # type: ignore[no-untyped-call]  # torch leaves it untyped
        names.append(name)
        dtypes.append(str(tensor.dtype).removeprefix("torch."))
        shapes.append(tuple(tensor.shape))
        handles.append({uuid: tuple(args)})
    return IpcExport(tuple(names), tuple(dtypes), tuple(shapes), tuple(handles))


def merge_exports(exports: Sequence[IpcExport]) -> IpcExport:
    """One export from every learner rank's: the same tensors, each with the handles of every GPU.

    Raises:
        ValueError: No exports, ranks that disagree on the tensors (names, dtypes or shapes), or two
            ranks on one GPU (an engine there could not tell whose copy to read).
    """
    if not exports:
        raise ValueError("no IPC exports to merge")
    first = exports[0]
    merged: list[Handles] = [dict(h) for h in first.handles]
    for rank, other in enumerate(exports[1:], start=1):
        if (other.names, other.dtype_names, other.shapes) != (first.names, first.dtype_names, first.shapes):
            raise ValueError(f"learner rank {rank} exports other tensors than rank 0")
        for into, handles in zip(merged, other.handles, strict=True):
            if into.keys() & handles.keys():
                raise ValueError(f"learner rank {rank} shares GPU {sorted(into.keys() & handles.keys())[0]} "
                                 "with another rank: one learner per GPU")
            into.update(handles)
    return IpcExport(first.names, first.dtype_names, first.shapes, tuple(merged))
