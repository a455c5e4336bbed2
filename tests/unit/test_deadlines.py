"""Every blocking wait of the driver has a deadline: no ``ray.get`` or ``ray.wait`` in rlplat without
``timeout=``. A wait without one turns a lost actor or a stuck task into a run that hangs forever.

Actor code (``*/worker.py``) is exempt: what an actor waits for inside a call is bounded by the
driver's deadline on that call (``rlplat.distributed.waits``), which replaces the actor when it passes.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "rlplat"


def _waits_without_deadline(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "ray"
                and node.func.attr in ("get", "wait") and not any(k.arg == "timeout" for k in node.keywords)):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} ray.{node.func.attr}")
    return found


def test_every_ray_wait_of_the_driver_has_a_deadline() -> None:
    driver_side = [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "worker.py"]
    assert len(driver_side) > 50  # the scan sees the package
    assert [w for p in driver_side for w in _waits_without_deadline(p)] == []
