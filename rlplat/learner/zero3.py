"""ZeRO-3 without whole copies: models built already sharded, read in and written out one tensor
at a time.

Loading a model whole on every rank and then handing it to DeepSpeed costs each rank the whole
model in host memory, twice with the reference (506 GB per copy for a 253B model in BF16, 8 ranks a
node). Under ``learner.zero_stage=3`` the learner instead:

* builds the policy and the reference from their config inside DeepSpeed's ``zero.Init``, so each
  parameter is partitioned the moment it is created (a transformers model and rlplat's DeciLM
  module alike), then copies the checkpoint in one tensor at a time: rank 0 reads the tensor (plain
  reads: a memory map would leave the whole file resident), and DeepSpeed scatters it to the ranks'
  partitions (``load_sharded``);
* writes a model directory by gathering one parameter at a time (``gathered_state_dict``): the
  device never holds more than one whole parameter beyond its shard; rank 0's host holds the copy
  it writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from typing_extensions import Self

from rlplat.models.decilm import weight_files
from rlplat.models.hf import causal_lm_from_config


def prepare_sharded() -> None:
    """Import what a sharded start needs (idempotent). zero.Init patches ``torch.Tensor.__new__``,
    and torch._dynamo, which transformers imports lazily while building a model, refuses to import
    under the patch."""
    import deepspeed.runtime.zero.partition_parameters  # noqa: F401
    import torch._dynamo  # noqa: F401


def load_sharded(path: str | Path, dtype: torch.dtype, ds_config: dict[str, Any], rank: int) -> Any:
    """The model of directory ``path`` with every parameter partitioned over the ranks from its
    creation on (collective: every rank calls it). ``ds_config`` is the learners' DeepSpeed config
    (ZeRO-3).

    Raises:
        RuntimeError: weights not in safetensors files, or not matching the model's parameters.
    """
    import deepspeed

    files = weight_files(Path(path))
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise RuntimeError(f"{path}: ZeRO-3 builds the model sharded and reads safetensors weights, and "
                           f"{absent[0]} is not there (a .bin checkpoint: save it again with "
                           "save_pretrained(safe_serialization=True), or set learner.sharded_init=false)")
    prepare_sharded()
    # dtype from the config (bf16/fp16 sections, else float32): an explicit dtype falls into a
    # precedence slip of DeepSpeed 0.19's Init._set_dtype that makes float32 bfloat16 on CPU.
    # mem_efficient_linear would replace torch's linear for the whole process, and the learner's
    # numerics must stay the engines' (exact weight-sync checks).
    with _freed_memory_returned():
        with deepspeed.zero.Init(config_dict_or_path=ds_config, mem_efficient_linear=False):
            model = causal_lm_from_config(path, dtype)
        _scatter(model, files, rank)
    return model.eval()


# glibc's mallopt parameter, and the value its dynamic threshold tops out at.
_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX = -3, 32 * 1024 * 1024


@contextlib.contextmanager
def _freed_memory_returned() -> Iterator[None]:
    """Within: every host allocation of 64 KiB or more is its own memory map, handed back to the
    system when freed. A sharded start allocates and frees one whole parameter after another (built,
    then partitioned; gathered, copied, partitioned again), and glibc's heap kept those blocks
    resident: measured, the sharded start then peaked above loading whole models (docs/benchmarks.md).
    Afterwards the threshold is glibc's dynamic maximum (large tensors come from the heap, as before).
    A libc without ``mallopt`` (not glibc) is left alone."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        yield
        return
    mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
    try:
        yield
    finally:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)


def _scatter(model: torch.nn.Module, files: Sequence[Path], rank: int) -> None:
    """Copy the tensors of ``files`` into ``model``'s partitioned parameters, one at a time: rank 0
    reads each tensor and DeepSpeed scatters it (every rank walks the same names in the same order:
    each gather is collective). A tied parameter appears once, under its first name.

    Raises:
        RuntimeError: a tensor the model has no parameter for, or a parameter no file holds.
    """
    import deepspeed

    params = dict(model.named_parameters())
    tied = {name for name, _ in model.named_parameters(remove_duplicate=False)} - set(params)
    loaded: set[str] = set()
    for file in files:
        with SafetensorsReader(file) as reader:
            for name in reader.names():
                if name in tied:
                    continue  # the same tensor as the parameter it is tied to
                if name not in params:
                    raise RuntimeError(f"{file}: tensor {name!r} is not a parameter of the model")
                with deepspeed.zero.GatheredParameters([params[name]], modifier_rank=0):
                    if rank == 0:
                        params[name].data.copy_(reader.read(name))
                loaded.add(name)
    missing = sorted(set(params) - loaded)
    if missing:
        raise RuntimeError(f"{files[0].parent}: no weights for {len(missing)} parameter(s), "
                           f"for example {missing[0]!r}")


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


class SafetensorsReader:
    """One tensor at a time from a safetensors file, by plain reads (``os.pread``) into a buffer of
    its own: memory-mapping the file (safetensors' ``safe_open``) would leave every page read resident
    in the process, the whole model once every tensor has been copied."""

    def __init__(self, path: Path) -> None:
        import json
        import os

        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        size = int.from_bytes(os.pread(self.fd, 8, 0), "little")
        header = json.loads(os.pread(self.fd, size, 8))
        header.pop("__metadata__", None)
        self.base = 8 + size
        self.entries: dict[str, dict[str, Any]] = header

    def names(self) -> list[str]:
        """The tensors' names, sorted (every rank walks them in the same order)."""
        return sorted(self.entries)

    def read(self, name: str) -> torch.Tensor:
        """Tensor ``name``, read from the file into new memory."""
        import os

        entry = self.entries[name]
        start, end = entry["data_offsets"]
        data = bytearray(end - start)
        view = memoryview(data)
        done = 0
        while done < len(data):  # pread may return less than asked
            chunk = os.preadv(self.fd, [view[done:]], self.base + start + done)
            if chunk <= 0:
                raise RuntimeError(f"{self.path}: tensor {name!r} ends past the end of the file")
            done += chunk
        dtype = _DTYPES[entry["dtype"]]
        flat = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
        return flat.reshape(entry["shape"])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        import os

        os.close(self.fd)


def gathered_state_dict(module: torch.nn.Module, rank: int) -> dict[str, torch.Tensor]:
    """The parameters of a ZeRO-3 ``module``, whole, on rank 0's host (empty on the other ranks),
    gathered one at a time (collective)."""
    import deepspeed

    state: dict[str, torch.Tensor] = {}
    for name, param in module.named_parameters():
        with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
            if rank == 0:
                state[name] = param.data.detach().to("cpu", copy=True)
    return state


def host_memory(reset_peak: bool = False) -> dict[str, float]:
    """This process's resident memory in bytes: ``current`` (VmRSS) and ``peak`` (VmHWM: since the
    process started, or since the last call with ``reset_peak``, which reads, then starts the peak
    again from now: Linux's ``clear_refs``)."""
    fields = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = float(value.split()[0]) * 1024
    if reset_peak:
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    return {"current": fields["VmRSS"], "peak": fields["VmHWM"]}
