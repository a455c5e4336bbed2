"""Names the sandbox tests share (a plain module: ``conftest`` is ambiguous across test folders)."""

from __future__ import annotations

import os

IS_ROOT = os.geteuid() == 0


def use_bwrap_option(mode: str) -> bool:
    return mode == "bwrap"
