"""Escape attempts against the sandbox, with bubblewrap and with the no-bubblewrap fallback.

Each test runs hostile code through ``Sandbox.run_python`` and checks the host afterwards: the
program's own report is not trusted for anything the test can check from outside.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rewards.sandbox import Limits, Sandbox, SandboxResult
from sandbox_helpers import IS_ROOT, use_bwrap_option

REPO = Path(__file__).resolve().parents[2]


def make_box(mode: str, **limits: Any) -> Sandbox:
    box = Sandbox(Limits(**{"wall_s": 5.0, **limits}), use_bwrap=use_bwrap_option(mode))
    if mode == "fallback" and box.isolation.bwrap is not None:
        pytest.fail("fallback mode unexpectedly used bwrap")
    return box


def run(box: Sandbox, code: str, stdin: bytes = b"", args: tuple[str, ...] = ()) -> tuple[str, SandboxResult]:
    """Run ``code`` as ``main.py`` (``args`` after it on its command line): its output, then the result."""
    res = box.run_python({"main.py": textwrap.dedent(code)}, ["main.py", *args], stdin=stdin)
    return res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace"), res


def require_mount_namespace(box: Sandbox) -> None:
    iso = box.isolation
    if iso.bwrap is None and "mount" not in iso.unshare:
        pytest.skip(f"fallback without a mount namespace here ({iso.description}): host paths are only "
                    f"protected by file permissions")


def require_uid_drop(box: Sandbox) -> None:
    if not box.isolation.drop_uid and box.isolation.bwrap is None:
        pytest.skip("no bubblewrap and no sandbox uid (not root, or an interpreter an unprivileged uid cannot "
                    "run): fork bombs are bounded only by the user's RLIMIT_NPROC and cleanup is best effort")


def test_isolation_is_reported(sandbox_mode: str) -> None:
    box = make_box(sandbox_mode)
    out, res = run(box, "print('hello')")
    assert out.strip() == "hello" and res.returncode == 0
    assert res.isolation == box.isolation.description
    assert ("bwrap" in res.isolation) == (sandbox_mode == "bwrap")


def test_writes_outside_the_sandbox_do_not_reach_the_host(sandbox_mode: str, tmp_path: Path) -> None:
    box = make_box(sandbox_mode)
    require_mount_namespace(box)
    name = f"rlplat-escape-{secrets.token_hex(6)}"
    targets = [f"/tmp/{name}", f"/var/tmp/{name}", f"/dev/shm/{name}", str(REPO / name), str(tmp_path / name),
               f"/root/{name}", f"/etc/{name}", f"/usr/{name}"]
    code = f"""
    for path in {targets!r}:
        try:
            with open(path, "w") as f:
                f.write("pwned")
            print("WROTE", path)
        except OSError as exc:
            print("denied", path, exc.errno)
    """
    out, res = run(box, code)
    assert res.returncode == 0, out
    for target in targets:
        assert not Path(target).exists(), f"sandbox created {target} on the host"


def test_host_files_are_not_readable(sandbox_mode: str, tmp_path: Path) -> None:
    box = make_box(sandbox_mode)
    require_mount_namespace(box)
    token = secrets.token_hex(16)
    secret = tmp_path / "secret.txt"
    secret.write_text(token)
    secret.chmod(0o644)  # world-readable on purpose: only the namespace may hide it
    code = f"""
    import os
    for path in [{str(secret)!r}, {str(REPO / "pyproject.toml")!r}, "/root/.bashrc", "/etc/shadow",
                 "/etc/hostname"]:
        try:
            print(path, open(path).read()[:200])
        except OSError as exc:
            print("denied", path, exc.errno)
    for top in ["/tmp", "/home", "/root", {str(REPO)!r}]:
        try:
            print(top, os.listdir(top))
        except OSError as exc:
            print("denied", top, exc.errno)
    """
    out, _ = run(box, code)
    assert token not in out
    assert "[build-system]" not in out and "[project]" not in out, "project files visible"
    assert "rewards" not in out.split("pyproject.toml")[-1], "project directory listing visible"


def test_environment_and_process_environ_hold_no_secrets(sandbox_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    token = secrets.token_hex(16)
    monkeypatch.setenv("RLPLAT_TEST_SECRET", token)
    box = make_box(sandbox_mode)
    code = """
    import os
    print(dict(os.environ))
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for name in ("environ", "cmdline"):
                try:
                    print(pid, open(f"/proc/{pid}/{name}", "rb").read()[:4000])
                except OSError:
                    pass
    """
    out, _ = run(box, code)
    assert token not in out
    env = eval(out.splitlines()[0])
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONIOENCODING", "PYTHONDONTWRITEBYTECODE",
                        "PYTHONHASHSEED", "LC_CTYPE", "PWD"}


def test_no_network(sandbox_mode: str) -> None:
    box = make_box(sandbox_mode)
    if box.isolation.bwrap is None and "net" not in box.isolation.unshare:
        pytest.skip("fallback without a network namespace here")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[object] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept)
    thread.start()
    code = f"""
    import socket
    for host, port in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
        try:
            socket.create_connection((host, port), timeout=1).close()
            print("CONNECTED", host)
        except OSError as exc:
            print("blocked", host, exc)
    try:
        print("resolved", socket.gethostbyname("example.com"))
    except OSError as exc:
        print("no dns", exc)
    """
    out, _ = run(box, code)
    done.set()
    thread.join()
    server.close()
    assert "CONNECTED" not in out and "resolved" not in out
    assert not accepted, "the sandbox reached a host loopback server"


def test_fork_bomb_is_contained_and_cleaned_up(sandbox_mode: str) -> None:
    box = make_box(sandbox_mode, wall_s=3.0, max_processes=32)
    require_uid_drop(box)
    marker = f"rlplat-fork-bomb-{secrets.token_hex(6)}"  # on every forked process's command line
    code = """
    import os
    n = 0
    while True:
        try:
            os.fork()
            n += 1
        except OSError:
            pass
    """
    _, res = run(box, code, args=(marker,))
    assert res.timed_out and res.duration_s < 300  # stopped by the 3 s deadline; unbounded without it
    assert not _wait_until_gone(marker), "fork bomb processes survived the sandbox"
    out, res = run(box, "print('alive')")  # the next sandbox (maybe the same uid) starts fine
    assert out.strip() == "alive"


def _processes_with(marker: str) -> list[int]:
    """Host processes whose command line holds ``marker`` (a sandbox passes it to its program as an
    argument: forks keep it, and children started with it carry it)."""
    found = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and marker.encode() in Path(entry.path, "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass  # exited meanwhile
    return found


def _wait_until_gone(marker: str, limit_s: float = 120.0) -> list[int]:
    """The processes still holding ``marker`` once none remain or ``limit_s`` passed (killed
    processes take a moment to be reaped, longer on a loaded machine)."""
    deadline = time.monotonic() + limit_s
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _processes_with(marker)


def test_memory_bomb_is_bounded(sandbox_mode: str) -> None:
    box = make_box(sandbox_mode, memory_mb=256)
    code = """
    try:
        x = bytearray(8 * 1024**3)
        print("ALLOCATED 8G")
    except MemoryError:
        print("memory error 1")
    chunks = []
    try:
        while True:
            chunks.append(bytearray(16 * 1024**2))
    except MemoryError:
        print("memory error 2 after", len(chunks) * 16, "MB")
    """
    out, _ = run(box, code)
    assert "ALLOCATED" not in out
    assert "memory error 2 after" in out
    assert int(out.split("after")[1].split()[0]) <= 256


def test_infinite_loop_is_killed_at_the_wall_clock_deadline(sandbox_mode: str) -> None:
    box = make_box(sandbox_mode, wall_s=1.5)
    _, res = run(box, "while True:\n    pass\n")
    assert res.timed_out and res.returncode != 0
    # Not killed before its deadline; killed long before "never" (the loop has no end of its own).
    assert 1.4 < res.duration_s < 300


def test_sleeping_children_do_not_outlive_the_deadline(sandbox_mode: str) -> None:
    box = make_box(sandbox_mode, wall_s=1.0)
    marker = f"rlplat-sleeper-{secrets.token_hex(6)}"  # on every sandboxed process's command line
    code = """
    import os, subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)", sys.argv[1]], start_new_session=True)
    if os.fork() == 0:
        os.setsid()
        time.sleep(1000)
    time.sleep(1000)
    """
    _, res = run(box, code, args=(marker,))
    assert res.timed_out and res.duration_s < 300  # the children sleep 1000 s
    require_uid_drop(box)  # what sweeps children that left the sandbox's session
    assert not _wait_until_gone(marker), "sandboxed children outlived the deadline"


def test_killing_the_parent_and_everything_else_is_harmless(sandbox_mode: str) -> None:
    box = make_box(sandbox_mode)
    code = """
    import os, signal
    for target in (os.getppid(), 1, -1, 0):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError as exc:
            print("kill", target, "failed", exc.errno)
    print("still here")
    """
    before = os.getpid()
    run(box, code)
    assert os.getpid() == before  # this process (the caller) survived
    out, _ = run(box, "print('next run ok')")
    assert "next run ok" in out


def test_privileges_cannot_be_regained(sandbox_mode: str) -> None:
    box = make_box(sandbox_mode)
    code = """
    import os
    print("uid", os.getuid(), os.geteuid())
    for call in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.chroot("/")):
        try:
            call()
            print("ESCALATED")
        except OSError as exc:
            print("denied", exc.errno)
    """
    if IS_ROOT and not box.isolation.drop_uid:
        pytest.skip(f"no uid drop here: the sandbox interpreter {box.isolation.python} is not executable by an "
                    "unprivileged uid, so sandboxed code runs as root")
    out, _ = run(box, code)
    assert "ESCALATED" not in out
    reported = [line.split()[1:] for line in out.splitlines() if line.startswith("uid ")]
    assert reported and "0" not in reported[0], f"sandboxed code runs as root: {out}"


def test_output_and_files_are_capped(sandbox_mode: str) -> None:
    box = make_box(sandbox_mode, max_output_bytes=10_000, max_file_mb=1)
    code = """
    import os, sys
    try:
        with open("big.bin", "wb") as f:
            f.write(b"x" * (4 * 1024**2))
        print("BIG FILE", file=sys.stderr)
    except OSError as exc:
        print("file limit", exc.errno, file=sys.stderr)
    sys.stdout.write("z" * 5_000_000)
    """
    _, res = run(box, code)
    assert res.truncated and len(res.stdout) <= 10_000
    err = res.stderr.decode()
    assert "BIG FILE" not in err and "file limit" in err, err  # RLIMIT_FSIZE refused the 4 MB write


def test_the_private_tmpfs_is_capped(sandbox_mode: str) -> None:
    box = make_box(sandbox_mode, max_file_mb=1, tmpfs_mb=8)
    require_mount_namespace(box)  # the private tmpfs is a mount
    code = """
    import sys
    n = 0
    try:
        while n <= 200:
            with open(f"f{n}.bin", "wb") as f:
                f.write(b"y" * (512 * 1024))
            n += 1
        print("WROTE 100 MB")
    except OSError as exc:
        print("disk limit after", n, exc.errno)
    """
    out, _ = run(box, code)
    assert "disk limit after" in out and "WROTE" not in out, out  # 8 MB are full long before 100 MB
    assert int(out.split("disk limit after")[1].split()[0]) <= 16  # 16 files of 512 KB fill 8 MB


def test_concurrent_sandboxes_cannot_see_each_other(sandbox_mode: str) -> None:
    """The reader searches while the writer's files exist, by a handshake: the writer, once its files
    are written, starts a child whose command line the host waits for; the host runs the reader, then
    kills that child, and only then does the writer leave (taking its files with it)."""
    box = make_box(sandbox_mode, wall_s=60.0)
    require_mount_namespace(box)
    token = secrets.token_hex(16)
    marker = f"rlplat-writer-{secrets.token_hex(6)}"
    writer = f"""
    import subprocess, sys
    for path in ("secret.txt", "/tmp/secret.txt"):
        with open(path, "w") as f:
            f.write({token!r})
    print("written", flush=True)
    beacon = ["-c", "import time; time.sleep(60)", "written-" + sys.argv[1]]  # the host waits for this
    subprocess.Popen([sys.executable, *beacon]).wait()  # until the host kills it: the reader is done
    print("leaving")
    """
    reader = """
    import os
    for root in ["/tmp", "/proc"]:
        for dirpath, dirs, files in os.walk(root):
            if dirpath.count("/") > 4 or "/task" in dirpath or "/net" in dirpath:
                dirs[:] = []
                continue
            for name in files:
                if "secret" in name:
                    try:
                        print(dirpath, name, open(os.path.join(dirpath, name)).read())
                    except OSError:
                        pass
    """
    results: dict[str, str] = {}
    t = threading.Thread(target=lambda: results.update(writer=run(box, writer, args=(marker,))[0]))
    t.start()
    try:
        deadline = time.monotonic() + 60
        while not _processes_with(f"written-{marker}") and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_with(f"written-{marker}"), "the writer never signalled that its files exist"
        results["reader"] = run(box, reader)[0]
    finally:
        for pid in _processes_with(f"written-{marker}"):
            with contextlib.suppress(ProcessLookupError):  # gone since it was listed
                os.kill(pid, signal.SIGKILL)
        t.join()
    assert "written" in results["writer"] and "leaving" in results["writer"], results["writer"]
    assert token not in results["reader"]


@pytest.mark.parametrize("ci", ["true", "false"])
def test_without_bwrap_its_half_fails_under_ci_and_is_skipped_elsewhere(ci: str, tmp_path: Path) -> None:
    """CI must not pass with the bubblewrap half of these tests skipped (a failed install)."""
    import subprocess
    import sys

    case = f"{Path(__file__).relative_to(REPO)}::test_isolation_is_reported[bwrap]"
    env = {"PATH": "/nonexistent", "HOME": str(tmp_path), "CI": ci}  # no bwrap on PATH
    res = subprocess.run([sys.executable, "-m", "pytest", case, "-q", "-rA", "-p", "no:cacheprovider"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    if ci == "true":
        assert res.returncode != 0 and "CI=true and bubblewrap not installed" in res.stdout, res.stdout
    else:
        assert res.returncode == 0 and "1 skipped" in res.stdout, res.stdout


def test_missing_bwrap_degrades_with_one_loud_warning() -> None:
    """Without bwrap on PATH, code still runs (reduced isolation) and the warning is given once."""
    import subprocess
    import sys

    code = textwrap.dedent(
        """
        import warnings
        from rewards import RewardInput, get_reward
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reward = get_reward("code")
            outs = [reward.score(RewardInput("", "def f():\\n    return 1\\n", ["assert f() == 1"])) for _ in range(3)]
        reduced = [w for w in caught if "REDUCED isolation" in str(w.message)]
        print(len(reduced), [o.score for o in outs], outs[0].details["isolation"])
        """
    )
    env = {"PATH": "/nonexistent", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    count, rest = res.stdout.strip().split(" ", 1)
    scores, isolation = rest.rsplit(" ", 1)
    assert count == "1" and scores == "[1.0, 1.0, 1.0]", res.stdout
    assert "bwrap" not in isolation and "rlimits" in isolation
    assert "bubblewrap unavailable" in res.stderr  # also logged, for runs that ignore warnings


def test_requiring_bwrap_without_it_is_reported() -> None:
    import subprocess
    import sys

    code = textwrap.dedent(
        """
        from rewards import RewardInput, get_reward
        out = get_reward("code", use_bwrap=True).score(RewardInput("", "x = 1", ["assert x == 1"]))
        print(out.score, out.error)
        """
    )
    env = {"PATH": "/nonexistent", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.stdout.startswith("0.0 RuntimeError: use_bwrap=True but bubblewrap does not work here"), res.stdout
