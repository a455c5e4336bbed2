"""Sandbox launcher: the first process of every sandbox (stdlib only, any Python >= 3.8).

``rewards.sandbox`` runs it as ``python -I -S -c <this source> <json spec>``, as the calling user
(root in CI). It applies, in this order: namespaces it can create without bubblewrap (network,
mount, IPC, UTS; a user namespace when not root) and private tmpfs mounts over world-writable and
private host paths; resource limits; the drop to the sandbox uid; no-new-privileges and a
parent-death signal. Then it either execs the target (bubblewrap, which supervises itself) or forks
it and waits, so that a program that kills its parent kills only this launcher. Exit status 125
with ``LAUNCH_FAILED`` on stderr means the sandbox could not be set up (the caller may retry).

This file is not imported by the package; it is read as text and never runs in the caller.
Annotations only (``typing`` is imported for the type checker alone): nothing to import at start-up.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at run time
if TYPE_CHECKING:
    from typing import Any, NoReturn

    Spec = dict[str, Any]

CLONE = {"mount": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000, "user": 0x10000000, "net": 0x40000000}
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE = 1, 38, 4
LIMITS = {
    "cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE, "nofile": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE,
}


def fail(msg: str) -> NoReturn:
    os.write(2, f"LAUNCH_FAILED: {msg}\n".encode())
    os._exit(125)


def libc_call(libc: ctypes.CDLL, name: str, *args: object) -> None:
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def read_file(name: str) -> bytes:
    with open(name, "rb") as f:
        return f.read()


def write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_namespaces(libc: ctypes.CDLL, spec: Spec) -> None:
    names = spec.get("unshare") or []
    if not names:
        return
    uid, gid = os.getuid(), os.getgid()
    flags = 0
    for name in names:
        flags |= CLONE[name]
    libc_call(libc, "unshare", flags)
    if "user" in names:  # map ourselves so that mounts are allowed; caps vanish again at exec
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"{uid} {uid} 1")
        write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    if "mount" in names:
        # The host working directory (under /tmp) is about to be hidden: carry its files over.
        files = {name: read_file(name) for name in os.listdir(".")}
        libc_call(libc, "mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
        for path, mode in spec.get("tmpfs", []):
            if os.path.isdir(path):
                opts = f"size={spec['tmpfs_mb']}m,mode={mode}".encode()
                libc_call(libc, "mount", b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts)
        move_workdir(files, spec["workdir"], spec.get("uid"))


def move_workdir(files: dict[str, bytes], workdir: str, uid: int | None) -> None:
    os.makedirs(workdir, 0o700)
    for name, data in files.items():
        with open(os.path.join(workdir, name), "wb") as f:
            f.write(data)
    if uid is not None:
        os.chown(workdir, uid, uid)
    os.chdir(workdir)


def apply_limits(spec: Spec) -> None:
    for name, value in spec.get("rlimits", {}).items():
        resource.setrlimit(LIMITS[name], (value, value))


def drop_privileges(spec: Spec) -> None:
    uid = spec.get("uid")
    if uid is None:
        return
    os.setgroups([])
    os.setgid(spec["gid"])
    os.setuid(uid)


def supervise(libc: ctypes.CDLL, argv: list[str], env: dict[str, str]) -> None:
    """Fork the target and mirror its exit status (so killing our parent is never possible)."""
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.execve(argv[0], argv, env)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) % 256 if hasattr(os, "waitstatus_to_exitcode") else status >> 8)


def main() -> None:
    spec = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        enter_namespaces(libc, spec)
        apply_limits(spec)
        drop_privileges(spec)
    except OSError as exc:
        fail(str(exc))
    if spec.get("no_new_privs"):
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        if spec.get("supervise"):
            supervise(libc, spec["argv"], spec["env"])
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    except OSError as exc:
        fail(f"exec {spec['argv'][0]}: {exc}")


main()
