"""Move weight buckets from learners to rollout engines.

Same node: the learner writes each bucket to a file in /dev/shm and the engine maps it (one copy
into page cache, one into the engine's parameters), the route LN §5.2.1 describes. Another node:
the bucket travels through the Ray object store and the receiving actor writes it to its own
/dev/shm, so the engine side always reads files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlplat.sync.buckets import BucketSpec, unpack


@dataclass(frozen=True)
class SyncManifest:
    """Everything a rollout worker needs to load weights version ``version``.

    Attributes:
        version: Weight version these buckets hold (monotonic, 0 = initial weights).
        specs: Layout of each bucket, in order.
        shm_paths: File of each bucket, valid on every node in ``shm_nodes``.
        shm_nodes: Ray node ids whose /dev/shm holds the files.
        refs: Ray object refs of each bucket's bytes, for nodes outside ``shm_nodes``; empty when
            every engine shares a node with a writer.
    """

    version: int
    specs: tuple[BucketSpec, ...]
    shm_paths: tuple[str, ...]
    shm_nodes: frozenset[str]
    refs: tuple[Any, ...] = ()

    @property
    def nbytes(self) -> int:
        """Total bytes of all buckets."""
        return sum(s.nbytes for s in self.specs)


def bucket_paths(shm_dir: str, tag: str, version: int, count: int) -> tuple[str, ...]:
    """Deterministic file names, identical on every node, so one manifest serves all nodes."""
    return tuple(os.path.join(shm_dir, f"rlplat-{tag}-v{version}-b{i}") for i in range(count))


def write_bucket(path: str, buf: torch.Tensor) -> None:
    """Write a uint8 bucket atomically (temp file then rename): a reader never sees half a bucket."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(buf.numpy().tobytes() if buf.numel() < (1 << 20) else memoryview(buf.numpy()))
    os.replace(tmp, path)


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


@dataclass(frozen=True)
class ExportPlan:
    """How learners publish weights version ``version`` (decided by the driver each sync).

    Attributes:
        version: The version being published.
        tag: Run-unique tag in the bucket file names.
        shm_dir: Directory of the bucket files (a tmpfs such as /dev/shm).
        shm_writer_ranks: Learner ranks that write bucket files, one per node that hosts engines.
        object_store: Rank 0 also puts the buckets in the Ray object store (engines on nodes
            without a learner).
        bucket_bytes: Target bucket size.
    """

    version: int
    tag: str
    shm_dir: str
    shm_writer_ranks: frozenset[int]
    object_store: bool
    bucket_bytes: int
