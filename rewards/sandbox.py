"""Run an untrusted Python program with bounded resources and no access to the host.

Isolation, strongest available first (probed once per process, reported in ``SandboxResult``):

* **bubblewrap** (``bwrap``): fresh user, PID, network, IPC and UTS namespaces; a root filesystem
  made of read-only system directories only (no home, no project, no other runs' files); a private,
  size-capped tmpfs as ``/tmp`` (the working directory) and ``/dev/shm``; a cleared environment.
* **fallback** (no bwrap, or bwrap unusable): the namespaces the launcher can create itself
  (network, mount, IPC, UTS; plus a user namespace when not root), private tmpfs mounts over
  ``/tmp``, ``/var/tmp``, ``/dev/shm`` and over home/project directories. No PID namespace. A loud
  warning is logged once, because isolation is reduced.

In every mode: rlimits (CPU seconds, address space, processes, file size, open files, no core
dumps); a wall-clock deadline after which the whole sandbox is SIGKILLed; captured output capped
per stream; and, when running as root, an unprivileged uid per concurrent sandbox. The kernel does
not apply RLIMIT_NPROC to root, so without the uid drop a fork bomb would not be contained. A uid
slot is owned through an ``flock`` (exclusive across processes), and every process of that uid is
killed before and after each run; a sandbox that still cannot start ("Resource temporarily
unavailable" while an old fork bomb dies) is retried after a back-off.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pwd
import random
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Files = Mapping[str, str | bytes]  # file name in the working directory -> content

logger = logging.getLogger("rewards.sandbox")

LAUNCHER_SOURCE = (Path(__file__).with_name("_launcher.py")).read_text()
SANDBOX_DIR = "/tmp/sandbox"  # working directory inside bubblewrap
_KILL_ALL = "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_warned: set[str] = set()
_probe_lock = threading.Lock()
_probe_cache: dict[tuple[bool | str, str | None, int], Isolation] = {}


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed program (all of its processes together where noted).

    Attributes:
        wall_s: Wall-clock deadline; on expiry every process of the sandbox is killed.
        cpu_s: RLIMIT_CPU per process.
        memory_mb: RLIMIT_AS (address space) per process.
        max_processes: RLIMIT_NPROC: processes of the sandbox uid (contains fork bombs).
        max_file_mb: RLIMIT_FSIZE: largest file a process may write.
        max_open_files: RLIMIT_NOFILE.
        max_output_bytes: Captured bytes kept per stream (stdout, stderr); the rest is discarded.
        tmpfs_mb: Size of each private tmpfs (``/tmp`` and ``/dev/shm``).
    """

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    max_processes: int = 32
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_bytes: int = 64 * 1024
    tmpfs_mb: int = 64


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run produced.

    Attributes:
        returncode: Exit status of the sandbox (negative: killed by that signal; None: not started).
        stdout, stderr: Captured output, each capped at ``Limits.max_output_bytes``.
        timed_out: The wall-clock deadline was hit and the sandbox killed.
        truncated: Some output was discarded.
        isolation: How the program was isolated, e.g. "bwrap,uid" or "netns,mountns,ipcns,utsns,uid".
        duration_s: Wall-clock time of the run.
    """

    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool
    isolation: str
    duration_s: float


@dataclass(frozen=True)
class Isolation:
    """The probed way to sandbox on this host."""

    bwrap: str | None
    unshare: tuple[str, ...]
    drop_uid: bool
    python: str
    description: str


class Sandbox:
    """Runs Python programs in isolation; thread-safe, one uid slot per concurrent run.

    Args:
        limits: Resource limits of each run.
        use_bwrap: "auto" (use bubblewrap if it works), True (require it), False (never).
        python: Interpreter for sandboxed programs; default: this interpreter's base installation
            if the sandbox uid can execute it, else the system ``python3``.
        uid_base, num_uids: The range of unprivileged uids used when running as root.
    """

    def __init__(
        self,
        limits: Limits = Limits(),
        *,
        use_bwrap: bool | str = "auto",
        python: str | None = None,
        uid_base: int = 64000,
        num_uids: int = 64,
    ) -> None:
        if use_bwrap not in ("auto", True, False):
            raise ValueError(f"use_bwrap must be 'auto', True or False, got {use_bwrap!r}")
        self.limits = limits
        self.use_bwrap = use_bwrap
        self.python = python
        self.uid_base, self.num_uids = uid_base, num_uids

    @property
    def isolation(self) -> Isolation:
        """How this sandbox isolates programs on this host (probed once per process)."""
        return probe_isolation(self.use_bwrap, self.python, self.uid_base)

    def run_python(self, files: Files, args: list[str], stdin: bytes = b"") -> SandboxResult:
        """Write ``files`` into a fresh working directory and run ``python -I -B *args`` there.

        Never raises because of what the program does; raises only if the sandbox cannot be set
        up at all (e.g. ``use_bwrap=True`` without a working bwrap).
        """
        iso = self.isolation
        for attempt in range(4):
            with _uid_slot(iso.drop_uid, self.uid_base, self.num_uids) as uid:
                result = self._run_once(iso, uid, files, args, stdin)
            if not _launch_failed(result):
                return result
            logger.info("sandbox start failed (attempt %d): %s", attempt + 1, result.stderr[-300:])
            time.sleep(0.1 * 3**attempt)  # an old fork bomb of this uid may still be dying
        return result

    def _run_once(self, iso: Isolation, uid: int | None, files: Files, args: list[str], stdin: bytes) -> SandboxResult:
        if uid is not None:
            sweep_uid(uid, iso.python)
        with _workdir(iso, uid) as workdir:
            argv, pass_fds, cwd = self._command(iso, workdir, files, args)
            spec = self._launch_spec(iso, uid, argv, workdir)
            cmd = [iso.python, "-I", "-S", "-c", LAUNCHER_SOURCE, json.dumps(spec)]
            try:
                return _communicate(cmd, cwd, pass_fds, stdin, self.limits, iso.description)
            finally:
                for fd in pass_fds:
                    os.close(fd)
                if uid is not None:
                    sweep_uid(uid, iso.python)

    def _command(self, iso: Isolation, workdir: str | None, files: Files, args: list[str]
                 ) -> tuple[list[str], list[int], str]:
        """The argv the launcher execs, the fds it must inherit, and its working directory."""
        py = [iso.python, "-I", "-B", *args]
        if iso.bwrap is None:
            if workdir is None:
                raise RuntimeError("the sandbox without bubblewrap needs a host working directory")
            for name, content in files.items():
                _write_private(Path(workdir) / name, content)
            return py, [], workdir
        fds: list[int] = []
        file_args: list[str] = []
        for name, content in files.items():
            fd = os.memfd_create(f"sandbox-{name}", 0)
            os.write(fd, content.encode() if isinstance(content, str) else content)
            os.lseek(fd, 0, os.SEEK_SET)
            fds.append(fd)
            file_args += ["--perms", "0644", "--file", str(fd), f"{SANDBOX_DIR}/{name}"]
        return bwrap_argv(iso, self.limits) + file_args + ["--", *py], fds, "/"

    def _launch_spec(self, iso: Isolation, uid: int | None, argv: list[str], workdir: str | None) -> dict[str, Any]:
        """The JSON spec ``_launcher.py`` applies (see its docstring)."""
        lim = self.limits
        nproc = lim.max_processes if uid is not None else _count_processes(os.getuid()) + lim.max_processes
        home = SANDBOX_DIR if (iso.bwrap or "mount" in iso.unshare) else workdir
        rlimits = {
            "cpu": lim.cpu_s, "as": lim.memory_mb << 20, "fsize": lim.max_file_mb << 20,
            "nofile": lim.max_open_files, "core": 0,
        }
        spec: dict[str, Any] = {
            "argv": argv,
            "env": sandbox_env(home),
            "workdir": SANDBOX_DIR,
            "rlimits": rlimits,
            "uid": uid, "gid": uid,
            "unshare": list(iso.unshare),
            "tmpfs": fallback_tmpfs_paths(iso, workdir) if iso.bwrap is None else [],
            "tmpfs_mb": lim.tmpfs_mb,
            "no_new_privs": True,
            "supervise": iso.bwrap is None,
        }
        # Without our own uid, RLIMIT_NPROC counts every process of the user: only set it when
        # it cannot starve the user's other processes of the limit they already have.
        if uid is not None or os.getuid() != 0:
            rlimits["nproc"] = nproc
        return spec


def bwrap_argv(iso: Isolation, lim: Limits) -> list[str]:
    """bubblewrap options: read-only system dirs, private tmpfs, every namespace, no env."""
    if iso.bwrap is None:
        raise ValueError("bwrap_argv needs an isolation that uses bubblewrap")
    args = [iso.bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        args += ["--ro-bind-try", path, path]
    prefix = python_prefix(iso.python)
    if not prefix.startswith("/usr/"):
        args += ["--ro-bind", prefix, prefix]
    size = str(lim.tmpfs_mb << 20)
    args += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
             "--size", size, "--tmpfs", "/tmp", "--dir", SANDBOX_DIR, "--chdir", SANDBOX_DIR, "--clearenv"]
    for key, value in sandbox_env(SANDBOX_DIR).items():
        args += ["--setenv", key, value]
    return args


def sandbox_env(home: str | None) -> dict[str, str]:
    """The whole environment of a sandboxed program: nothing is inherited (no secrets)."""
    return {
        "PATH": _SAFE_PATH, "HOME": home or "/", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
    }


def fallback_tmpfs_paths(iso: Isolation, workdir: str | None) -> list[tuple[str, str]]:
    """Host paths hidden behind private tmpfs mounts when bubblewrap is not available.

    World-writable temp dirs become private (mode 1777); home and project directories become empty
    (mode 755). Paths holding the sandbox's interpreter are left visible, or it could not start.
    The launcher moves the working directory's files into the private /tmp before dropping privileges.
    """
    if "mount" not in iso.unshare:
        return []
    prefix = python_prefix(iso.python)
    project = str(Path(__file__).resolve().parents[1])
    hidden = {"/home", "/root", project, sys.prefix, os.path.expanduser("~")}
    keep = [p for p in sorted(hidden) if p not in ("/", "") and not (prefix + "/").startswith(p.rstrip("/") + "/")]
    return [("/tmp", "1777"), ("/var/tmp", "1777"), ("/dev/shm", "1777")] + [(p, "755") for p in keep]


def python_prefix(python: str) -> str:
    """Installation prefix of an interpreter path (``/usr`` for ``/usr/bin/python3``)."""
    return str(Path(os.path.realpath(python)).parent.parent)


def _launch_failed(result: SandboxResult) -> bool:
    """The sandbox could not start (as opposed to: the program ran and failed)."""
    if result.returncode == 125 and b"LAUNCH_FAILED" in result.stderr:
        return True
    return result.stderr.startswith(b"bwrap:") and b"Resource temporarily unavailable" in result.stderr


# --- running and capturing -------------------------------------------------------------------


def _communicate(cmd: list[str], cwd: str, pass_fds: list[int], stdin: bytes, lim: Limits, iso: str) -> SandboxResult:
    """Start ``cmd`` in its own session; feed stdin; read capped output until exit or deadline."""
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, pass_fds=pass_fds, env={"PATH": _SAFE_PATH}, start_new_session=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        _feed(proc, stdin)
        out, err, truncated, timed_out = _read_until_exit(proc, start + lim.wall_s, lim.max_output_bytes)
    finally:
        _kill_session(proc)
    return SandboxResult(proc.returncode, out, err, timed_out, truncated, iso, time.monotonic() - start)


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    if proc.stdin is None:
        return
    try:
        if data:
            proc.stdin.write(data)  # small (a nonce line); a full pipe would block, so keep it small
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def _read_until_exit(proc: subprocess.Popen[bytes], deadline: float, cap: int) -> tuple[bytes, bytes, bool, bool]:
    """Collect up to ``cap`` bytes per stream until both close (or the process exits) or the deadline."""
    if proc.stdout is None or proc.stderr is None:
        raise ValueError("the sandbox process needs piped stdout and stderr")
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    bufs = {out_fd: bytearray(), err_fd: bytearray()}
    truncated = timed_out = False
    exited_at = None
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = proc.poll() is None
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                break  # exited, but a stray child still holds the pipes open
            for key, _ in sel.select(timeout=min(0.05, deadline - now)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = bufs[key.fd]
                room = cap - len(buf)
                buf += chunk[: max(room, 0)]
                truncated |= len(chunk) > room
    if not timed_out and proc.poll() is None:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), truncated, timed_out


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the launcher's session (bwrap then takes its PID namespace down with it)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# --- uid slots and sweeping ------------------------------------------------------------------


class _uid_slot:
    """Exclusive ownership of one sandbox uid (an flock held for the duration), or None."""

    def __init__(self, drop_uid: bool, base: int, count: int) -> None:
        self.drop_uid, self.base, self.count = drop_uid, base, count
        self.fd: int | None = None

    def __enter__(self) -> int | None:
        if not self.drop_uid:
            return None
        lock_dir = _lock_dir()
        uids = [u for u in range(self.base, self.base + self.count) if not _uid_exists(u)]
        random.shuffle(uids)  # spread concurrent sandboxes instead of all racing for the first uid
        for blocking in (False, True):
            for uid in uids if not blocking else uids[:1]:
                fd = os.open(os.path.join(lock_dir, f"uid-{uid}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    os.close(fd)
                    continue
                self.fd = fd
                return uid
        raise RuntimeError("no sandbox uid available")

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock


def _lock_dir() -> str:
    """A root-only directory of uid lock files (sandboxed uids must not be able to hold them)."""
    path = os.path.join(tempfile.gettempdir(), f"rlplat-sandbox-locks-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not os.path.isdir(path):
        raise RuntimeError(f"unsafe sandbox lock directory {path} (owner/mode); remove it")
    return path


def _uid_exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def processes_by_uid() -> dict[int, list[int]]:
    """Live (non-zombie) processes grouped by real uid, from /proc/*/status.

    /proc/<pid> ownership is not enough: a non-dumpable process (our stdio harness) shows as root.
    """
    found: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue
        fields = dict(line.split(b":", 1) for line in status.splitlines() if b":" in line)
        if fields.get(b"State", b"").strip().startswith(b"Z"):
            continue
        uid = int(fields.get(b"Uid", b"-1").split()[0])
        found.setdefault(uid, []).append(int(entry.name))
    return found


def processes_of_uid(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is ``uid``."""
    return processes_by_uid().get(uid, [])


def _count_processes(uid: int) -> int:
    return len(processes_of_uid(uid))


def sweep_uid(uid: int, python: str, timeout_s: float = 5.0) -> bool:
    """Kill every process of a sandbox uid; returns True once none is left.

    ``kill(-1, SIGKILL)`` issued *as that uid* reaches all of its processes in one call, which is
    what stops a fork bomb racing a pid-by-pid kill. Only used for our own reserved uids.
    """
    deadline = time.monotonic() + timeout_s
    while processes_of_uid(uid):
        if time.monotonic() > deadline:
            logger.warning("sandbox uid %d still has processes after %.1fs", uid, timeout_s)
            return False
        subprocess.run([python, "-I", "-S", "-c", _KILL_ALL], user=uid, group=uid, extra_groups=[],
                       env={}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=timeout_s, check=False)
        time.sleep(0.01)
    return True


def sweep_free_slots(base: int = 64000, count: int = 64, python: str | None = None) -> None:
    """Kill leftovers of sandbox uids that no live sandbox owns (e.g. after a worker was killed)."""
    lock_dir = os.path.join(tempfile.gettempdir(), f"rlplat-sandbox-locks-{os.getuid()}")
    if os.geteuid() != 0 or not os.path.isdir(lock_dir):
        return
    live = [uid for uid in processes_by_uid() if base <= uid < base + count]
    python = python or choose_python(need_world_access=True)
    for uid in live:
        fd = os.open(os.path.join(_lock_dir(), f"uid-{uid}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            sweep_uid(uid, python)
        except BlockingIOError:
            pass  # a live sandbox owns it
        finally:
            os.close(fd)


class _workdir:
    """Host working directory for the fallback (0700, owned by the sandbox uid); none for bwrap."""

    def __init__(self, iso: Isolation, uid: int | None) -> None:
        self.iso, self.uid = iso, uid
        self.path: str | None = None

    def __enter__(self) -> str | None:
        if self.iso.bwrap is not None:
            return None
        self.path = path = tempfile.mkdtemp(prefix="rlplat-sandbox-")
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)
        return path

    def __exit__(self, *exc: object) -> None:
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)


def _write_private(path: Path, content: str | bytes) -> None:
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# --- probing ---------------------------------------------------------------------------------


def probe_isolation(use_bwrap: bool | str, python: str | None, uid_base: int) -> Isolation:
    """Find the strongest isolation that works here (cached per process) and warn once if reduced."""
    key = (use_bwrap, python, uid_base)
    with _probe_lock:
        if key not in _probe_cache:
            _probe_cache[key] = _probe(use_bwrap, python, uid_base)
        return _probe_cache[key]


def _probe(use_bwrap: bool | str, python: str | None, uid_base: int) -> Isolation:
    is_root = os.geteuid() == 0
    interp = python or choose_python(need_world_access=is_root)
    drop_uid = is_root and _world_executable(interp)
    if is_root and not drop_uid:
        _warn_once("uid", f"sandbox interpreter {interp} is not executable by an unprivileged uid: sandboxed "
                          f"code runs as root, so fork bombs are NOT contained. Set the code reward's "
                          f"'python' option to a world-readable interpreter such as /usr/bin/python3.")
    bwrap_error = "disabled by config"
    if use_bwrap in ("auto", True):
        bwrap = shutil.which("bwrap")
        bwrap_error = "bwrap not found on PATH (install the 'bubblewrap' package)"
        if bwrap:
            iso = Isolation(bwrap, (), drop_uid, interp, "bwrap" + (",uid" if drop_uid else ""))
            error = _try(iso, uid_base)
            if error is None:
                return iso
            bwrap_error = error
        if use_bwrap is True:
            raise RuntimeError(f"use_bwrap=True but bubblewrap does not work here: {bwrap_error}")
    return _probe_fallback(interp, drop_uid, uid_base, bwrap_error, use_bwrap)


def _probe_fallback(interp: str, drop_uid: bool, uid_base: int, bwrap_error: str, use_bwrap: bool | str) -> Isolation:
    user = () if os.geteuid() == 0 else ("user",)
    for names in (user + ("net", "mount", "ipc", "uts"), user + ("net",), ()):
        desc = ",".join([f"{n}ns" for n in names if n != "user"] + (["uid"] if drop_uid else []) + ["rlimits"])
        iso = Isolation(None, names, drop_uid, interp, desc)
        if _try(iso, uid_base) is None:
            if use_bwrap == "auto":
                _warn_once("bwrap", f"bubblewrap unavailable ({bwrap_error}): code rewards run with REDUCED "
                                    f"isolation ({desc}; no PID namespace, host filesystem readable where "
                                    f"permissions allow). Install bubblewrap for full isolation.")
            return iso
    raise RuntimeError(f"cannot start a sandboxed interpreter ({interp}) in any isolation mode")


def _try(iso: Isolation, uid_base: int) -> str | None:
    """Run a trivial program in ``iso``; None if it worked, else the reason."""
    box = Sandbox(Limits(wall_s=20.0), uid_base=uid_base)
    try:
        with _uid_slot(iso.drop_uid, uid_base, box.num_uids) as uid:
            res = box._run_once(iso, uid, {"probe.py": "print('ok')\n"}, ["probe.py"], b"")
    except OSError as exc:
        return str(exc)
    if res.returncode == 0 and res.stdout.strip() == b"ok":
        return None
    return (res.stderr.decode(errors="replace").strip() or f"exit status {res.returncode}")[-500:]


def choose_python(need_world_access: bool) -> str:
    """This interpreter's base installation if usable by the sandbox uid, else a system python3."""
    candidates = [os.path.realpath(getattr(sys, "_base_executable", sys.executable) or sys.executable)]
    candidates += [p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)]
    for cand in candidates:
        if not need_world_access or _world_executable(cand):
            return cand
    return candidates[0]


def _world_executable(path: str) -> bool:
    """Whether an unprivileged uid can execute ``path`` (every parent directory searchable)."""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & 0o001:
            return False
        return all(p.stat().st_mode & 0o001 for p in real.parents)
    except OSError:
        return False


def _warn_once(key: str, message: str) -> None:
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def iter_lines(data: bytes) -> Iterator[str]:
    """Decoded lines of captured output (invalid UTF-8 replaced)."""
    yield from data.decode("utf-8", "replace").splitlines()
