"""Move weight buckets from learners to rollout engines.

Same node: the learner writes each bucket to a file in /dev/shm and the engine maps it (one copy
into page cache, one into the engine's parameters), the route LN §5.2.1 describes. Another node:
the bucket travels through the Ray object store and the receiving actor writes it to its own
/dev/shm, so the engine side always reads files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from rlbase import atomic_writer
from rlplat.sync.buckets import unpack
from rlplat.types import BucketSpec


def bucket_paths(shm_dir: str, tag: str, version: int, count: int) -> tuple[str, ...]:
    """Deterministic file names, identical on every node, so one manifest serves all nodes."""
    return tuple(os.path.join(shm_dir, f"rlplat-{tag}-v{version}-b{i}") for i in range(count))


def write_bucket(path: str, buf: torch.Tensor) -> None:
    """Write a uint8 bucket atomically: a reader never sees half a bucket."""
    with atomic_writer(path, "wb") as f:
        # A memoryview writes the tensor's memory without a copy (bench_sync.py).
        f.write(memoryview(buf.numpy()))  # type: ignore[arg-type]  # numpy arrays are buffers


def read_bucket(path: str, nbytes: int) -> torch.Tensor:
    """Map a bucket file as a uint8 tensor (no copy until the engine copies into its params)."""
    return torch.from_file(path, shared=False, size=nbytes, dtype=torch.uint8)


def iter_weights(specs: Sequence[BucketSpec], paths: Sequence[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield every ``(name, tensor)`` of the buckets, reading one bucket file at a time."""
    for spec, path in zip(specs, paths):
        buf = read_bucket(path, spec.nbytes)
        yield from unpack(spec, buf)


def remove_files(paths: Sequence[str]) -> None:
    """Delete bucket files, ignoring those already gone."""
    for p in paths:
        Path(p).unlink(missing_ok=True)
