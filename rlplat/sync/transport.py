"""Move weight buckets from learners to rollout engines.

Same node: the learner writes each bucket to a file in /dev/shm and the engine maps it (one copy
into page cache, one into the engine's parameters), the route LN §5.2.1 describes. Another node:
the bucket travels through the Ray object store and the receiving actor writes it to its own
/dev/shm, so the engine side always reads files.

Streamed sync (``sync.stream``): the engines start loading before the learner has written
anything and wait for each bucket file in turn, so an engine loads bucket k while the learner
packs bucket k + 1. A bucket file only ever appears whole (it is renamed into place), and an
export that fails leaves an abort marker so that the waiting engines stop at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch

from rlbase import atomic_writer
from rlplat.sync.buckets import pack, unpack
from rlplat.types import BucketSpec

# How often a streamed load looks for its next bucket file (seconds): short against the tens of
# milliseconds one bucket takes to pack, and the look is one stat call.
_POLL_S = 0.002


class SyncAborted(RuntimeError):
    """The export of the weights being loaded failed (its abort marker appeared)."""


def bucket_paths(shm_dir: str, tag: str, version: int, count: int) -> tuple[str, ...]:
    """Deterministic file names, identical on every node, so one manifest serves all nodes."""
    return tuple(os.path.join(shm_dir, f"rlplat-{tag}-v{version}-b{i}") for i in range(count))


def write_bucket(path: str, buf: torch.Tensor) -> None:
    """Write a uint8 bucket atomically: a reader never sees half a bucket."""
    with atomic_writer(path, "wb") as f:
        # A memoryview writes the tensor's memory without a copy (bench_sync.py).
        f.write(memoryview(buf.numpy()))  # type: ignore[arg-type]  # numpy arrays are buffers


def pack_to_file(path: str, spec: BucketSpec, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Pack the bucket straight into a mapped temporary file, then rename it to ``path`` (a reader
    never sees half a bucket); returns the mapped bytes.

    One pass over the bytes fewer than ``pack`` then ``write_bucket`` (bench_sync.py, one thread,
    100m model: 0.97-1.49x the speed of the two, by bucket size and run; docs/benchmarks.md).
    """
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.truncate(spec.nbytes)
        buf = pack(spec, tensors, torch.from_file(tmp, shared=True, size=spec.nbytes, dtype=torch.uint8))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return buf


def abort_marker(paths: Sequence[str]) -> str:
    """The file whose presence tells streamed loads of the buckets at ``paths`` that their export failed."""
    return f"{paths[0]}.abort"


def mark_aborted(paths: Sequence[str]) -> None:
    """Stop every streamed load of these buckets (the export failed)."""
    Path(abort_marker(paths)).touch()


def _wait_for(path: str, abort: str, deadline: float) -> None:
    """Return once ``path`` exists; raise when ``abort`` exists or ``deadline`` (monotonic) passes."""
    while not os.path.exists(path):
        if os.path.exists(abort):
            raise SyncAborted(f"the export of {path} failed (abort marker {abort})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"bucket file {path} did not appear in time (timeouts.sync_s)")
        time.sleep(_POLL_S)


def read_bucket(path: str, nbytes: int) -> torch.Tensor:
    """Map a bucket file as a uint8 tensor (no copy until the engine copies into its params)."""
    return torch.from_file(path, shared=False, size=nbytes, dtype=torch.uint8)


def iter_weights(specs: Sequence[BucketSpec], paths: Sequence[str],
                 wait_s: float = 0.0) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield every ``(name, tensor)`` of the buckets, reading one bucket file at a time.

    ``wait_s`` > 0 (streamed sync): each file may not exist yet; wait for it, up to ``wait_s`` in
    all. Raises ``SyncAborted`` once the abort marker appears, ``TimeoutError`` past ``wait_s``.
    """
    if len(specs) != len(paths):  # checked before any bucket is read: never a partial load
        raise ValueError(f"{len(specs)} bucket specs for {len(paths)} bucket files")
    deadline = time.monotonic() + wait_s
    for spec, path in zip(specs, paths, strict=True):
        if wait_s > 0:
            _wait_for(path, abort_marker(paths), deadline)
        buf = read_bucket(path, spec.nbytes)
        yield from unpack(spec, buf)


def remove_files(paths: Sequence[str]) -> None:
    """Delete bucket files (and their abort marker), ignoring those already gone."""
    for p in [*paths, abort_marker(paths)] if paths else []:
        Path(p).unlink(missing_ok=True)
