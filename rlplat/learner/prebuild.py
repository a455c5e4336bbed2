"""Build DeepSpeed's JIT-compiled CPU op ahead of the first run: ``python -m rlplat.learner.prebuild``.

DeepSpeed compiles its shared-memory collective (``deepspeed_shm_comm``) the first time a CPU
learner starts: 24 s of C++ on an idle 2-core machine, 54 s on a busy one, inside the learners'
start deadline. ``scripts/setup.sh`` calls this once, so the op is there before any
run: in the directory the learners read (``rlplat.distributed.cluster.torch_extensions_dir``).
A GPU set-up needs nothing (DeepSpeed's CUDA collectives are NCCL's).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    """Build (or find up to date) the CPU collective op; returns the exit code (1: not built).
    ``-h``/``--help`` prints what it does and exits 0 without building."""
    parser = argparse.ArgumentParser(prog="python -m rlplat.learner.prebuild", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit codes: 0 built, up to date or nothing to build; 1 not built.")
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    # Imported once the command line is read: Ray (under rlplat.distributed) takes seconds to import.
    from rlplat.distributed.cluster import torch_extensions_dir

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ["TORCH_EXTENSIONS_DIR"] = torch_extensions_dir()
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None:
        print("[prebuild] this DeepSpeed has no CPU shared-memory op: nothing to build")
        return 0
    start = time.perf_counter()
    try:
        builder.load(verbose=False)
    except Exception as err:  # noqa: BLE001 - reported; the first learner then builds it (or fails clearly)
        print(f"[prebuild] could not build DeepSpeed's {builder.NAME}: {err}", file=sys.stderr)
        return 1
    print(f"[prebuild] DeepSpeed's {builder.NAME} is ready in {os.environ['TORCH_EXTENSIONS_DIR']} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
