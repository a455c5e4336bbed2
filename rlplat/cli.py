"""The ``rlplat`` command (a console script of the package): one name for the module entry points.

``rlplat train [OVERRIDE ...]`` is ``python -m rlplat.launch [OVERRIDE ...]``, ``rlplat report
RUN_DIR ... [--out DIR]`` is ``python -m rlplat.report`` and ``rlplat doctor [FLAG ...]`` is
``python -m rlplat.doctor``: the arguments are handed on unchanged and the exit code is theirs.
The module forms keep working. Nothing heavy is imported before a command is chosen, so
``rlplat --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

EXIT_USAGE = 2

USAGE = """\
usage: rlplat COMMAND [ARG ...]

Commands:
  train [OVERRIDE ...]         compose the config, check it and run its stages on Ray
                               (= python -m rlplat.launch; rlplat train --help lists the
                               config groups, the experiments and where the fields are documented)
  report RUN_DIR ... [--out DIR]
                               redraw a run's report.md and plots, or overlay several runs
                               (= python -m rlplat.report)
  doctor [--device cpu|gpu|auto] [--fp8] [--json PATH] [--keep DIR]
                               check this machine before a run: versions, devices, /dev/shm, Ray,
                               and the RL loop on a tiny model (= python -m rlplat.doctor; exit 0
                               when no check fails)

Options:
  -h, --help                   show this message and exit"""


def _train(args: Sequence[str]) -> int:
    from rlplat.launch import main

    return main(list(args))


def _report(args: Sequence[str]) -> int:
    from rlplat.report.__main__ import main

    return main(list(args))


def _doctor(args: Sequence[str]) -> int:
    from rlplat.doctor.__main__ import main

    return main(list(args))


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"train": _train, "report": _report, "doctor": _doctor}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rlplat COMMAND ARGS``; returns the command's exit code (2: no such command)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    if args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"rlplat: no command '{args[0]}' (commands: {', '.join(COMMANDS)}).\n\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    # What the module forms set before they start (``python -m rlplat.launch``).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
