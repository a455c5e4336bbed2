"""``python -m rlplat.report RUN_DIR [RUN_DIR ...] [--out DIR]``: redraw a run's report, or
overlay several runs in one.

One run: ``report.md`` and ``plots/`` are (re)written in its run directory. Several: in ``--out``,
which is then required. Exit code 2 on bad input (a directory that is not a run, no ``--out``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rlplat.report.document import load_run, write_report

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlplat.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--out", type=Path, help="report directory (required with several runs)")
    args = parser.parse_args(argv)
    if len(args.run_dirs) > 1 and args.out is None:
        print("rlplat.report: --out is required with several runs: pass --out DIR for the compared report",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        runs = [load_run(d) for d in args.run_dirs]
    except FileNotFoundError as err:
        print(f"rlplat.report: {err}", file=sys.stderr)
        return EXIT_USAGE
    path = write_report(args.out or args.run_dirs[0], runs)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
