"""Weight-sync bandwidth against this machine's memory-copy and /dev/shm bandwidth, same run.

For each model (``--models``) the benchmark starts the stage's real actors (``StageActors``: two
co-located bundles, two ZeRO-1 learner ranks, two vLLM engines) and times:

1. the full sync, ``WeightSync.sync`` (gather -> pack -> bucket files in /dev/shm -> both engines
   reload), for each bucket size of ``--bucket-mb``: one warm-up sync, then ``--repeats`` timed;
   GB/s = ``sync/bytes`` (one copy of the weights) / median seconds; each sync is followed by a
   single-threaded 256 MiB ``copy_``, and the median of the per-repeat ratios (sync GB/s / copy
   GB/s) is reported too (on a shared machine the copy rate itself moves, so read both);
2. the same path split into phases: the learners' export (pack + write, rank 0 writes), and the
   engines' load (driver round trip, and the in-engine time ``LoadReport.seconds``);
3. in this process, single-threaded like the learner and the engine, the pure-torch pieces on the
   model's real tensors: ``pack`` all buckets, ``write_bucket`` them to /dev/shm, and read them
   back (``iter_weights`` + ``copy_`` into preallocated tensors, i.e. the engine's copy without
   vLLM's post-load processing), and ``pack_to_file``, which packs straight into the mapped
   /dev/shm file (the export since the sync streams; what the intermediate bucket tensor cost);
4. references measured in the same invocation: 1 GiB ``copy_`` bandwidth with 1 and with all
   threads, and /dev/shm write and read+copy bandwidth of a 1 GiB file.

Usage::

    python bench/bench_sync.py                              # tiny and 100m, buckets 16/64/256 MB
    python bench/bench_sync.py --models 100m --bucket-mb 64 --repeats 5 --json out.json
    python bench/bench_sync.py --bucket-mb 64 --precision full,fp8   # FP8 payload and time (docs/fp8.md)
    python bench/bench_sync.py --models 100m --bucket-mb 16,64 --stream off,on   # streamed against not
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import (
    GIB,
    build_model,
    count_params,
    machine_info,
    memcpy_bandwidth,
    save_json,
    shm_bandwidth,
    summary,
    write_json,
)

TIMEOUT_S = 600.0


def actors_config(model_dir: Path) -> Any:
    """The run config of the sync benchmark: the embedded default's cluster, no reference model."""
    from rlplat.config.schema import Config, LearnerConfig, ModelConfig

    return Config(model=ModelConfig(path=str(model_dir)), learner=LearnerConfig(reference_model=False))


class PairedCopy:
    """A single-threaded 256 MiB ``copy_``, timed right after each sync, so that each sync has a
    memory-copy rate measured a moment apart (the copy rate of a shared machine moves too)."""

    NBYTES = 256 << 20

    def __init__(self) -> None:
        import torch

        self.src = torch.ones(self.NBYTES, dtype=torch.uint8)
        self.dst = torch.zeros(self.NBYTES, dtype=torch.uint8)

    def gbps(self) -> float:
        """GB/s of one copy (each byte counted once)."""
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            start = time.perf_counter()
            self.dst.copy_(self.src)
            return self.NBYTES / (time.perf_counter() - start) / 1e9
        finally:
            torch.set_num_threads(old)


def full_syncs(actors: Any, cfg: Any, bucket_mb: int, repeats: int, copy: PairedCopy, version: int,
               precision: str = "full", stream: bool = True) -> tuple[dict[str, Any], Any, int]:
    """Median of ``WeightSync.sync`` (the production path) at ``bucket_mb`` and ``precision``
    (``fp8``: FP8 linear weights, quantized by the learners, dequantized by the engines), streamed
    or not (``sync.stream``), after one warm-up, each sync paired with a memory copy; the versions
    sent follow ``version`` (the engines' current one). Returns the results, the ``WeightSync`` and
    the version the engines now hold."""
    from rlplat.runtime.weight_sync import WeightSync
    from rlplat.sync.plan import plan_export

    sync = WeightSync(replace(cfg.sync, bucket_mb=bucket_mb, stream=stream), actors.learners, actors.rollouts,
                      tag=f"bench{os.getpid()}", fp8=precision == "fp8")
    version += 1
    sync.sync(version)
    reports, copies = [], []
    for _ in range(repeats):
        version += 1
        reports.append(sync.sync(version))
        copies.append(copy.gbps())
    nbytes = reports[0].nbytes
    buckets = len(actors.learners.export_layout(plan_export(sync.cfg, actors.learners.node_ids(),
                                                            actors.rollouts.node_ids(), 0, sync.tag)))
    secs = summary([r.seconds for r in reports])
    ratios = [nbytes / r.seconds / 1e9 / c for r, c in zip(reports, copies, strict=True)]
    row = {"bucket_mb": bucket_mb, "precision": precision, "stream": stream, "buckets": buckets, "nbytes": nbytes, "seconds": secs, "gbps": nbytes / secs["median"] / 1e9,
           "paired_memcpy_gbps": summary(copies), "sync_over_memcpy": summary(ratios),
           "shm_engines": reports[0].shm_engines}
    return row, sync, version


def phase_syncs(actors: Any, sync: Any, repeats: int, version: int) -> tuple[dict[str, Any], int]:
    """The steps of ``WeightSync.sync``, timed one by one (export, then each engine's load), for
    the versions after ``version``; returns them and the version the engines then hold."""
    import ray

    from rlplat.sync.plan import plan_export

    learners, rollouts = actors.learners, actors.rollouts
    export, load_rt, load_engine = [], [], []
    for _ in range(repeats):
        version += 1
        plan = plan_export(sync.cfg, learners.node_ids(), rollouts.node_ids(), version, sync.tag)
        shm_nodes = frozenset(learners.node_ids()[r] for r in plan.shm_writer_ranks)
        t0 = time.perf_counter()
        manifest = replace(learners.export_weights(plan), shm_nodes=shm_nodes)
        t1 = time.perf_counter()
        loads = ray.get([w.load_weights.remote(manifest) for w in rollouts.workers], timeout=TIMEOUT_S)
        t2 = time.perf_counter()
        export.append(t1 - t0)
        load_rt.append(t2 - t1)
        load_engine.append(max(r.seconds for r in loads))
    return {"export_s": summary(export), "load_roundtrip_s": summary(load_rt),
            "load_in_engine_s": summary(load_engine)}, version


def torch_pieces(model_dir: Path, bucket_mb: int, repeats: int) -> dict[str, Any]:
    """Single-threaded pack / write / read+copy of the model's tensors, as the sync does them, and
    the pack-into-shm alternative; GB/s of each over the model's bytes."""
    import torch
    from safetensors.torch import load_file

    from rlplat.sync.buckets import pack, plan_buckets
    from rlplat.sync.transport import bucket_paths, iter_weights, pack_to_file, remove_files, write_bucket

    torch.set_num_threads(1)
    tensors = load_file(str(model_dir / "model.safetensors"))
    dest = {k: torch.zeros_like(v) for k, v in tensors.items()}
    specs = plan_buckets([(k, v.dtype, tuple(v.shape)) for k, v in tensors.items()], bucket_mb << 20)
    paths = bucket_paths("/dev/shm", f"benchpieces{os.getpid()}", 0, len(specs))
    times: dict[str, list[float]] = {"pack": [], "write": [], "read_copy": [], "pack_to_file": []}
    try:
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            bufs = [pack(s, tensors) for s in specs]
            t1 = time.perf_counter()
            for p, b in zip(paths, bufs):
                write_bucket(p, b)
            t2 = time.perf_counter()
            del bufs
            for name, view in iter_weights(specs, paths):
                dest[name].copy_(view)
            t3 = time.perf_counter()
            remove_files(paths)
            t4 = time.perf_counter()
            for spec, p in zip(specs, paths):
                pack_to_file(p, spec, tensors)
            t5 = time.perf_counter()
            remove_files(paths)
            for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t5 - t4)):
                times[k].append(dt)
    finally:
        remove_files(paths)
    nbytes = sum(s.nbytes for s in specs)
    # The first round faults in the allocator's pages; it is dropped like a warm-up.
    out = {k: {"seconds": summary(v[1:]), "gbps": nbytes / summary(v[1:])["median"] / 1e9}
           for k, v in times.items()}
    export = [a + b for a, b in zip(times["pack"][1:], times["write"][1:])]
    out["pack_plus_write"] = {"seconds": summary(export), "gbps": nbytes / summary(export)["median"] / 1e9}
    return out


def bench_model(name: str, root: Path, bucket_sizes: list[int], repeats: int,
                precisions: tuple[str, ...] = ("full",), streams: tuple[bool, ...] = (True,)) -> dict[str, Any]:
    """Every sync measurement for one model."""
    from rlplat.runtime.stage_actors import StageActors

    model_dir = build_model(name, root / "models")
    cfg = actors_config(model_dir)
    out: dict[str, Any] = {"model": name, "params": count_params(model_dir), "loadavg_start": os.getloadavg()}
    copy = PairedCopy()
    with StageActors(cfg, str(model_dir), cfg.learner.lr, scorer=False) as actors:
        rows = []
        version = actors.rollout_group.infos[0]["version"]
        for mb in bucket_sizes:
            for precision in precisions:
                for stream in streams:
                    row, sync, version = full_syncs(actors, cfg, mb, repeats, copy, version, precision, stream)
                    if precision == "full" and not stream:  # the phase split runs export, then load
                        phases, version = phase_syncs(actors, sync, repeats, version)
                        row.update(phases)
                    rows.append(row)
        out["syncs"] = rows
    out["torch_pieces"] = {mb: torch_pieces(model_dir, mb, repeats) for mb in bucket_sizes}
    out["loadavg_end"] = os.getloadavg()
    return out


def references() -> dict[str, Any]:
    """Copy and /dev/shm bandwidths of 1 GiB buffers (GB/s)."""
    threads = os.cpu_count() or 1
    return {"memcpy_1thread": memcpy_bandwidth(GIB, threads=1),
            f"memcpy_{threads}threads": memcpy_bandwidth(GIB, threads=threads),
            "shm_1thread": shm_bandwidth(GIB)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,100m", help="comma-separated: tiny, 100m")
    parser.add_argument("--bucket-mb", default="16,64,256", help="comma-separated sync.bucket_mb values")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--precision", default="full", help="comma-separated: full, fp8 (rollout.precision)")
    parser.add_argument("--stream", default="on", help="comma-separated: on, off (sync.stream)")
    parser.add_argument("--workdir", type=Path, default=None, help="where models are built (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import ray

    from rlplat.config.schema import ClusterConfig
    from rlplat.distributed.cluster import start_ray

    root = args.workdir or Path(tempfile.mkdtemp(prefix="rlplat-bench-sync-"))
    buckets = [int(b) for b in args.bucket_mb.split(",")]
    result: dict[str, Any] = {"machine": machine_info(), "references_before": references(), "models": []}
    start_ray(ClusterConfig(num_cpus=8, dashboard=False))
    try:
        for name in args.models.split(","):
            result["models"].append(bench_model(name, root, buckets, args.repeats, tuple(args.precision.split(",")),
                                                tuple(v == "on" for v in args.stream.split(","))))
            save_json(args.json, result)  # keep finished models if a later one fails
    finally:
        ray.shutdown()
    result["references_after"] = references()
    result["machine"]["loadavg_end"] = os.getloadavg()
    write_json(args.json, result)


if __name__ == "__main__":
    main()
