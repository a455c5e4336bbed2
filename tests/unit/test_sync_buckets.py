"""Bucket planning, packing and the /dev/shm transport (pure torch)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import torch

from rlplat.config.schema import SyncConfig
from rlplat.sync.buckets import ALIGN, pack, plan_buckets, unpack
from rlplat.sync.plan import plan_export
from rlplat.sync.transport import (
    SyncAborted,
    bucket_paths,
    iter_weights,
    mark_aborted,
    pack_to_file,
    remove_files,
    write_bucket,
)
from rlplat.types import BucketSpec


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"a": torch.randn(3, 5, generator=g), "b": torch.arange(7), "c": torch.randn(100, generator=g).half(),
            "big": torch.randn(64, 64, generator=g)}


def test_buckets_respect_size_and_order() -> None:
    t = _tensors()
    specs = plan_buckets([(k, v.dtype, tuple(v.shape)) for k, v in t.items()], 512)
    names = [e.name for s in specs for e in s.entries]
    assert names == list(t)
    for s in specs:
        assert all(e.offset % ALIGN == 0 for e in s.entries)
        assert s.nbytes <= 512 or len(s.entries) == 1  # a tensor larger than a bucket travels alone


def test_pack_unpack_roundtrip_is_exact(tmp_path: Path) -> None:
    t = _tensors()
    specs = plan_buckets([(k, v.dtype, tuple(v.shape)) for k, v in t.items()], 600)
    paths = bucket_paths(str(tmp_path), "test", 3, len(specs))
    for spec, path in zip(specs, paths):
        write_bucket(path, pack(spec, t))
    got = dict(iter_weights(specs, paths))
    assert got.keys() == t.keys()
    for k in t:
        assert got[k].dtype == t[k].dtype and torch.equal(got[k], t[k])


def test_packing_into_the_mapped_file_writes_the_same_bytes(tmp_path: Path) -> None:
    t = _tensors()
    specs = plan_buckets([(k, v.dtype, tuple(v.shape)) for k, v in t.items()], 600)
    direct, mapped = bucket_paths(str(tmp_path), "a", 1, len(specs)), bucket_paths(str(tmp_path), "b", 1, len(specs))
    for spec, d, m in zip(specs, direct, mapped):
        write_bucket(d, pack(spec, t))
        returned = pack_to_file(m, spec, t)
        assert Path(d).read_bytes() == Path(m).read_bytes() == returned.numpy().tobytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in [*direct, *mapped])  # no tmp left


def _specs_and_paths(tmp_path: Path) -> tuple[dict[str, torch.Tensor], list[BucketSpec], tuple[str, ...]]:
    t = _tensors()
    specs = plan_buckets([(k, v.dtype, tuple(v.shape)) for k, v in t.items()], 128)
    assert len(specs) >= 3
    return t, specs, bucket_paths(str(tmp_path), "s", 2, len(specs))


def test_a_streamed_load_reads_each_bucket_as_it_appears(tmp_path: Path) -> None:
    """The writer holds the later buckets back until the reader has taken a tensor of the first:
    the load can only go on if it reads bucket 0 while the rest do not exist yet."""
    t, specs, paths = _specs_and_paths(tmp_path)
    first_read = threading.Event()
    held_back = []

    def learner() -> None:
        pack_to_file(paths[0], specs[0], t)
        held_back.append(first_read.wait(timeout=60))
        for spec, path in zip(specs[1:], paths[1:]):
            pack_to_file(path, spec, t)

    writer = threading.Thread(target=learner)
    writer.start()
    got = {}
    for name, tensor in iter_weights(specs, paths, wait_s=120):
        first_read.set()
        got[name] = tensor.clone()
    writer.join()
    assert held_back == [True], "the first tensor must be read while the later buckets are not written"
    assert got.keys() == t.keys() and all(torch.equal(got[k], t[k]) for k in t)


def test_a_streamed_load_stops_at_the_abort_marker_and_at_its_deadline(tmp_path: Path) -> None:
    t, specs, paths = _specs_and_paths(tmp_path)
    pack_to_file(paths[0], specs[0], t)
    threading.Timer(0.1, mark_aborted, args=(paths,)).start()
    loaded = []
    with pytest.raises(SyncAborted, match="abort marker"):
        for name, _ in iter_weights(specs, paths, wait_s=30):
            loaded.append(name)
    assert loaded == [e.name for e in specs[0].entries]
    remove_files(paths)
    assert list(tmp_path.iterdir()) == []  # the marker goes with the files
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=re.escape("timeouts.sync_s")):
        list(iter_weights(specs, paths, wait_s=0.2))
    assert time.monotonic() - start >= 0.2


def test_pack_zeroes_alignment_gaps() -> None:
    t = {"a": torch.full((3,), -1, dtype=torch.int8), "b": torch.full((5,), -1, dtype=torch.int8)}
    (spec,) = plan_buckets([(k, v.dtype, tuple(v.shape)) for k, v in t.items()], 1 << 20)
    buf = pack(spec, t)
    assert spec.nbytes == 2 * ALIGN and int((buf != 0).sum()) == 8  # only the 8 payload bytes


def test_unpack_gives_views_not_copies() -> None:
    t = {"w": torch.ones(4)}
    (spec,) = plan_buckets([("w", torch.float32, (4,))], 1 << 20)
    buf = pack(spec, t)
    (_, view), = list(unpack(spec, buf))
    buf.zero_()
    assert view.sum() == 0


def test_bucket_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        plan_buckets([("w", torch.float32, (4,))], 0)


def test_export_plan_uses_shm_on_shared_nodes_and_object_store_elsewhere() -> None:
    plan = plan_export(SyncConfig(), ["n1", "n1", "n2", "n2"], ["n1", "n2", "n3"], 5, "t")
    assert plan.shm_writer_ranks == frozenset({0, 2}) and plan.object_store and plan.version == 5
    only_shm = plan_export(SyncConfig(), ["n1", "n2"], ["n1", "n2"], 1, "t")
    assert not only_shm.object_store
    forced = plan_export(SyncConfig(transport="object_store"), ["n1"], ["n1"], 1, "t")
    assert forced.shm_writer_ranks == frozenset() and forced.object_store
    with pytest.raises(RuntimeError):
        plan_export(SyncConfig(transport="shm"), ["n1"], ["n2"], 1, "t")


def test_gpu_engines_get_16_bit_weights_unless_they_cross_nodes() -> None:
    """vLLM's online FP8 quantizes the weights a GPU engine loads itself: within a node the sync sends
    them in their dtype. Through the object store (other nodes) FP8 halves the bytes (fused groups
    sharing a scale come back exact); on CPU, FP8 payloads are how the engines get FP8 numerics."""
    local = plan_export(SyncConfig(), ["n1"], ["n1"], 1, "t", fp8=True, device="gpu")
    remote = plan_export(SyncConfig(), ["n1"], ["n1", "n2"], 1, "t", fp8=True, device="gpu")
    cpu = plan_export(SyncConfig(), ["n1"], ["n1"], 1, "t", fp8=True, device="cpu")
    assert (local.fp8, remote.fp8, cpu.fp8) == (False, True, True)
    assert not plan_export(SyncConfig(), ["n1"], ["n2"], 1, "t", fp8=False, device="gpu").fp8
