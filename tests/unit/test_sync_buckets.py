"""Bucket planning, packing and the /dev/shm transport (pure torch)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlplat.sync.buckets import ALIGN, pack, plan_buckets, unpack
from rlplat.sync.plan import plan_export
from rlplat.config.schema import SyncConfig
from rlplat.sync.transport import bucket_paths, iter_weights, write_bucket


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
