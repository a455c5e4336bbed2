"""``python -m rlplat.doctor`` (also ``rlplat doctor``): is this machine ready for a run?

Checks the installed versions, the devices, /dev/shm and Ray, then runs the RL loop's critical
paths on a tiny model built locally (real Ray actors, vLLM and DeepSpeed): the actors' start,
generation with log-probs, the reward scorer, (GPU) sleep and wake, one learner step, an exact
weight sync, and with ``--fp8`` an FP8 engine. Prints a progress line per check (stderr), then the
table (stdout). Exit codes: 0 no check failed (SKIP is fine), 1 a check failed, 2 bad arguments.
Nothing heavy is imported before the arguments are read, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rlplat.doctor.runner import Check, DeadlineExceeded, exit_code, run_checks, within
from rlplat.doctor.table import format_table, results_json, summary_line

if TYPE_CHECKING:
    from rlplat.doctor.smoke import Smoke

EPILOG = """\
checks, in order (each has a deadline; a check whose prerequisite did not pass is SKIPped):
  versions       python, torch, vLLM, DeepSpeed, Ray, transformers; vLLM is the release rlplat pins
  devices        CUDA devices with names and memory, or CPU cores and memory
  shm            room in /dev/shm for one weight sync of the smoke's model
  tiny model     the tiny Llama and character tokenizer, built locally as a run builds them
  ray            a local Ray instance on 127.0.0.1 (or RAY_ADDRESS when set) and its resources
  actors start   a stage's actors: one DeepSpeed learner, one vLLM engine, the reward scorer
  generate       samples with a finite log-prob per token
  reward         the samples scored in the reward workers; the math verifier judges a control
  sleep/wake     GPU: the engine's sleep frees its memory, waking takes it back (SKIP on CPU)
  learner step   one GRPO optimizer step changes the learner's greedy output
  weight sync    after a sync, the engine's greedy output equals the learner's, token for token
  fp8 engine     with --fp8: FP8 engines get the weights by an FP8 sync and sample (SKIP without)

exit codes: 0 every check passed or was skipped, 1 a check failed (its row says why and the fix),
2 bad arguments.
On a 2-core CPU machine it takes about 25 s (40 s with --fp8). With RAY_ADDRESS set it joins that cluster: give --keep a directory
on a filesystem every node shares, since the actors read the smoke's model from it."""

# Seconds each check may take before it FAILs and the run goes on. They exceed the deadline of each
# call the check makes on the smoke's actor groups (``smoke_config``: 240 s to start, 120 s per
# call), so that the groups' own errors, which name the actor that did not answer, come first.
DEADLINES = {"versions": 30, "devices": 60, "shm": 30, "tiny model": 120, "ray": 200, "actors start": 400,
             "generate": 150, "reward": 150, "sleep/wake": 300, "learner step": 200, "weight sync": 200,
             "fp8 engine": 600}
# How long the clean-up (killing the actors, stopping Ray) may take before the doctor exits anyway.
CLOSE_S = 60.0


def build_parser() -> argparse.ArgumentParser:
    """The doctor's arguments (argparse exits with 2 on a bad one, naming it)."""
    parser = argparse.ArgumentParser(
        prog="python -m rlplat.doctor",
        description="Check that this machine (or the Ray cluster at RAY_ADDRESS) can run rlplat: versions, "
                    "devices, /dev/shm, Ray, then the RL loop's critical paths on a tiny model built locally.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto",
                        help="where the smoke runs: auto (the default) is gpu when torch sees a CUDA device")
    parser.add_argument("--fp8", action="store_true",
                        help="also start an FP8 engine (rollout.precision=fp8; emulated on CPU) and sync to it")
    parser.add_argument("--json", metavar="PATH", type=Path,
                        help="also write the results as JSON to PATH (its directory must exist)")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="build the smoke's model in DIR (created if missing) and keep it; default: a "
                             "temporary directory, removed at the end")
    return parser


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parsed arguments; exits with 2 and a message naming the flag and the fix when one is wrong."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json is not None and not args.json.parent.is_dir():
        parser.error(f"--json {args.json}: the directory {args.json.parent} does not exist; create it or "
                     "name a file in an existing directory")
    if args.json is not None and args.json.is_dir():
        parser.error(f"--json {args.json} is a directory; name a file to write")
    if args.keep is not None and args.keep.exists() and not args.keep.is_dir():
        parser.error(f"--keep {args.keep} is a file; name a directory (it is created if missing)")
    return args


def resolve_device(asked: str) -> Literal["cpu", "gpu"]:
    """``auto``: gpu when torch sees a CUDA device, else cpu (also when torch cannot be imported:
    the devices check then says why)."""
    if asked in ("cpu", "gpu"):
        return "gpu" if asked == "gpu" else "cpu"
    try:
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - reported by the versions and devices checks
        return "cpu"


class LazySmoke:
    """The smoke, imported and built at its first use: a framework that cannot even be imported
    (a broken torch or Ray install) then fails the smoke's checks, with its error, instead of the
    doctor; the environment checks still run."""

    def __init__(self, device: Literal["cpu", "gpu"], fp8: bool, work_dir: Path) -> None:
        self.device, self.fp8, self.work_dir = device, fp8, work_dir
        self.smoke: Smoke | None = None

    def __call__(self) -> Smoke:
        if self.smoke is None:
            from rlplat.doctor.smoke import Smoke, SmokeOptions

            self.smoke = Smoke(SmokeOptions(self.device, self.fp8, self.work_dir,
                                            os.environ.get("RAY_ADDRESS") or None))
        return self.smoke

    def close(self) -> None:
        """``Smoke.close`` within ``CLOSE_S``, if the smoke was built: a hung clean-up must not keep
        the doctor from answering."""
        if self.smoke is None:
            return
        print("[doctor] stopping the smoke's actors and Ray ...", file=sys.stderr, flush=True)
        try:
            with within(CLOSE_S):
                self.smoke.close()
        except (DeadlineExceeded, Exception) as err:  # noqa: BLE001 - the results are known: report them
            print(f"[doctor] the clean-up failed ({err}); exiting anyway", file=sys.stderr, flush=True)


def doctor_checks(smoke: LazySmoke) -> list[Check]:
    """The checks of the table, in order, with their deadlines, prerequisites and default fixes."""
    from rlplat.doctor.environment import check_devices, check_versions

    def shm() -> str:
        from rlplat.preflight import check_shm

        return check_shm(smoke().cfg)

    setup_fix = "see the versions check; make setup (EXTRA=gpu on GPU) installs what rlplat needs"
    logs = "the error names the actor; its log is in Ray's session logs (/tmp/ray/session_latest/logs)"
    rows: list[tuple[str, Callable[[], str], tuple[str, ...], str]] = [
        ("versions", check_versions, (), setup_fix),
        ("devices", lambda: check_devices(smoke.device), (), ""),
        ("shm", shm, (), setup_fix),
        ("tiny model", lambda: smoke().build_model(), (), setup_fix),
        ("ray", lambda: smoke().start_ray(), (), "Ray's own logs are in /tmp/ray/session_latest/logs (raylet.err, "
         "gcs_server.err); on a loaded machine its 30 s start-up can pass: run the doctor again"),
        ("actors start", lambda: smoke().start_actors(), ("devices", "tiny model", "ray"), logs),
        ("generate", lambda: smoke().generate(), ("actors start",), logs),
        ("reward", lambda: smoke().reward(), ("generate",), logs),
        ("sleep/wake", lambda: smoke().sleep_wake(), ("shm", "actors start"), logs),
        ("learner step", lambda: smoke().learner_step(), ("actors start",), logs),
        ("weight sync", lambda: smoke().exact_sync(), ("shm", "learner step"), logs),
        # Its own actors (not the first ones): what it needs only when asked, so that it says "not asked".
        ("fp8 engine", lambda: smoke().fp8_engine(), ("devices", "shm", "tiny model", "ray") if smoke.fp8 else (),
         logs),
    ]
    return [Check(name, run, DEADLINES[name], needs, fix) for name, run, needs, fix in rows]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the doctor; returns the exit code (argparse exits with 2 itself)."""
    args = parse(argv)
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(key, value)  # the model is built locally; nothing is fetched
    device = resolve_device(args.device)
    work_dir = (args.keep or Path(tempfile.mkdtemp(prefix="rlplat-doctor-"))).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"[doctor] device {device}{', with an FP8 engine' if args.fp8 else ''}; smoke directory {work_dir}",
          file=sys.stderr, flush=True)
    start = time.perf_counter()
    smoke = LazySmoke(device, args.fp8, work_dir)
    try:
        results = run_checks(doctor_checks(smoke))
    finally:
        smoke.close()
        if args.keep is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    seconds = time.perf_counter() - start
    print(summary_line(results, seconds))
    print(format_table(results))
    if args.keep is not None:
        print(f"Smoke directory kept: {work_dir}")
    if args.json is not None:
        from rlbase import atomic_write

        context = {"device": device, "fp8": args.fp8, "ray_address": os.environ.get("RAY_ADDRESS") or None}
        atomic_write(args.json, json.dumps(results_json(results, seconds, context), indent=2) + "\n")
        print(f"Results: {args.json}")
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
