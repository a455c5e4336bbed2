"""The import contracts cover the whole package: every top-level module of rlplat sits in a layer of
the layers contract in pyproject.toml (a module in no layer may import anything, unchecked)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser as a package (pytest depends on it there)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


def _top_level_modules() -> set[str]:
    package = REPO / "rlplat"
    modules = {f"rlplat.{p.stem}" for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return modules | {f"rlplat.{p.name}" for p in package.iterdir() if (p / "__init__.py").is_file()}


def test_every_top_level_module_of_rlplat_is_in_a_layer() -> None:
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    def names(layers: list[str]) -> set[str]:
        return {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}

    layers = next(c["layers"] for c in contracts if c["type"] == "layers" and "rlplat.launch" in names(c["layers"]))
    layered = names(layers)
    assert _top_level_modules() - layered == set(), "add these modules to a layer in pyproject.toml"
    assert layered - _top_level_modules() == set(), "these layers name no module"
