"""Import an object from a dotted path: ``pkg.mod.attr`` or ``pkg.mod:attr``."""

from __future__ import annotations

import importlib
from typing import Any

from rlbase.errors import PluginError


def import_object(path: str) -> Any:
    """The object at ``path``; the longest importable module prefix wins.

    ``pkg.mod:Cls.attr`` names the module explicitly; in ``pkg.mod.Cls`` the module is found by
    trying ``pkg.mod``, then ``pkg``.

    Raises:
        PluginError: no prefix imports, the module raised while importing, or an attribute is missing.
    """
    if ":" in path:
        module_name, _, attr = path.partition(":")
        parts = [module_name, *attr.split(".")]
        cuts = [1]
    else:
        parts = path.split(".")
        cuts = list(range(len(parts) - 1, 0, -1))
    for cut in cuts:
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                continue  # this prefix is not a module; try a shorter one
            raise PluginError(f"importing {module_name!r} (for {path!r}) failed: {exc}") from exc
        except Exception as exc:
            raise PluginError(f"importing {module_name!r} (for {path!r}) failed: {exc!r}") from exc
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError as exc:
            raise PluginError(f"{path!r}: {exc}") from exc
        return obj
    raise PluginError(f"cannot import {path!r}: no prefix of it is an importable module "
                      "(is the package installed, or on PYTHONPATH?)")
