"""Preflight refuses a ``sync.shm_dir`` too small for one weight sync (exit 2, before Ray), instead of
the first sync killing the learner that writes into a full tmpfs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlplat.config.errors import ConfigError
from rlplat.config.loader import load
from rlplat.preflight import preflight
from rlplat.runtime.plan_report import sync_bytes


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, as a container's default /dev/shm is a small one (needs root to mount)."""
    path = tmp_path / "shm"
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_tmpfs_too_small_for_one_sync_is_refused_naming_the_field(small_tmpfs: Path, tmp_path: Path) -> None:
    cfg, _ = load([f"hydra.run.dir={tmp_path / 'run'}", f"sync.shm_dir={small_tmpfs}"])
    assert sync_bytes(cfg) > 2**20  # the tiny default policy (0.8M parameters in float32) does not fit
    with pytest.raises(ConfigError, match=r"sync\.shm_dir") as err:
        preflight(cfg)
    assert "MiB free" in str(err.value) and "--shm-size" in str(err.value)


def test_a_missing_shm_dir_is_refused_and_the_default_passes(tmp_path: Path) -> None:
    cfg, _ = load([f"hydra.run.dir={tmp_path / 'run'}", f"sync.shm_dir={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="is not a directory"):
        preflight(cfg)
    cfg, _ = load([f"hydra.run.dir={tmp_path / 'run'}"])
    preflight(cfg)  # /dev/shm here holds one sync of the tiny model


def test_a_cuda_ipc_sync_needs_no_shm_dir(tmp_path: Path) -> None:
    """Co-located GPU engines take the learners' weights as CUDA IPC handles: no /dev/shm copy."""
    from rlplat.preflight import check_shm

    nowhere = f"sync.shm_dir={tmp_path / 'nowhere'}"
    cfg, _ = load([f"hydra.run.dir={tmp_path / 'run'}", "cluster.device=gpu", "model.dtype=bfloat16", nowhere])
    assert "CUDA IPC" in check_shm(cfg)
    cfg, _ = load([f"hydra.run.dir={tmp_path / 'run'}", "cluster.device=gpu", "model.dtype=bfloat16",
                   "sync.backend=buckets", nowhere])
    with pytest.raises(ConfigError, match="is not a directory"):
        check_shm(cfg)
