"""Atomic file writes: a temporary file in the same directory, flushed, then renamed over the target.

A reader (or a resumed run) sees the old file or the new one, never half of one. ``fsync=True`` also
makes the new content durable before the rename, for files a resume depends on. ``append_line`` is
the other half, for logs that grow: each line durable before the next step.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "w", *, fsync: bool = False) -> Iterator[IO[Any]]:
    """Context manager yielding a file (``mode`` "w" text or "wb" bytes) that replaces ``path``
    when the block ends without error.

    The parent directory is created if needed. On an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; the file it becomes gets what ``open`` would have given it
        # (0666 less the umask), so that a run's files on a shared file system stay readable.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """This process's umask, read without changing it (Linux reports it in /proc; elsewhere it is
    set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, fsync: bool = False) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically."""
    with atomic_writer(path, "wb" if isinstance(data, bytes) else "w", fsync=fsync) as f:
        f.write(data)


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]], *, fsync: bool = False) -> int:
    """Write ``rows`` as JSON lines atomically; returns the number of rows written."""
    count = 0
    with atomic_writer(path, "w", fsync=fsync) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def append_line(file: IO[str], line: str) -> None:
    """Write ``line`` and a newline to ``file``, flushed and fsynced: a crash after the call never
    loses it (at worst the line the crash cut short, which readers skip)."""
    file.write(line + "\n")
    file.flush()
    os.fsync(file.fileno())
