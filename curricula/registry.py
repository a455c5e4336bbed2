"""Building curricula by name or by import path.

Built-in names are ``uniform`` and ``progressive``. Anything with a dot is an import path
(``my_pkg.curricula.EasyFirst`` or ``my_pkg.curricula:EasyFirst``) to a class or function called
with the same keyword arguments: ``uids``, ``seed``, ``total_steps``, ``store`` and the options.
The import path is the open registry (Hydra's ``_target_`` idea); ``register_curriculum`` exists
for a project that wants a short name, and refuses to overwrite an existing one.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from curricula.base import Curriculum
from curricula.options import ProgressiveOptions, UniformOptions, options_from_kwargs
from curricula.progressive import ProgressiveCurriculum
from curricula.uniform import UniformCurriculum

Factory = Callable[..., Curriculum]

_REGISTRY: dict[str, Factory] = {
    "uniform": UniformCurriculum.from_kwargs,
    "progressive": ProgressiveCurriculum.from_kwargs,
}
_OPTIONS: dict[str, type] = {"uniform": UniformOptions, "progressive": ProgressiveOptions}
_PROTOCOL_METHODS = ("next_batch", "observe", "metrics", "state_dict", "load_state_dict")


def register_curriculum(name: str) -> Callable[[Factory], Factory]:
    """Decorator registering a curriculum class or factory under a short ``name``.

    Raises:
        ValueError: if the name is taken or contains a dot (dots mean import paths).
    """
    if "." in name or ":" in name:
        raise ValueError(f"curriculum name {name!r} must not contain '.' or ':' (those mean an import path)")

    def decorator(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"curriculum {name!r} is already registered ({_REGISTRY[name]!r})")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_curricula() -> list[str]:
    """Registered short names."""
    return sorted(_REGISTRY)


def build_curriculum(name_or_target: str, **kwargs: Any) -> Curriculum:
    """Build a curriculum from a registered name or an import path.

    Args:
        name_or_target: ``"uniform"``, ``"progressive"``, another registered name, or a dotted
            import path to a class/function.
        **kwargs: ``uids`` (required), ``seed``, ``total_steps``, ``store`` and the curriculum's
            options as flat keywords (e.g. ``sigma=0.1``).

    Raises:
        ValueError: unknown name, or a path that does not import.
        TypeError: unknown option (the message lists the valid ones), or the built object lacks
            a ``Curriculum`` method.
    """
    curriculum = resolve_factory(name_or_target)(**kwargs)
    missing = [m for m in _PROTOCOL_METHODS if not callable(getattr(curriculum, m, None))]
    if missing:
        raise TypeError(f"{name_or_target!r} built {type(curriculum).__name__}, which lacks {', '.join(missing)}; "
                        "a curriculum needs next_batch, observe, metrics, state_dict, load_state_dict")
    return curriculum


def resolve_factory(name_or_target: str) -> Factory:
    """The class or function ``build_curriculum`` would call for ``name_or_target``."""
    if name_or_target in _REGISTRY:
        return _REGISTRY[name_or_target]
    if "." not in name_or_target and ":" not in name_or_target:
        raise ValueError(f"unknown curriculum {name_or_target!r}; use one of {available_curricula()} "
                         "or an import path such as 'my_pkg.module.MyCurriculum'")
    return _import_object(name_or_target)


def _import_object(path: str) -> Factory:
    module_name, _, attr_path = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        obj: Any = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            obj = getattr(obj, attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import curriculum {path!r}: {err}. Check the module is importable "
                         "(on PYTHONPATH, and shipped to Ray workers) and the name is spelled right") from err
    if not callable(obj):
        raise ValueError(f"curriculum {path!r} resolved to {obj!r}, which is not a class or function")
    factory: Factory = obj
    return factory


def check_curriculum_config(name_or_target: str, options: Mapping[str, Any]) -> None:
    """Validate a curriculum config before any work starts (no dataset needed).

    Built-ins: every option is checked (unknown keys, ranges). Import paths: the object must import.

    Raises:
        ValueError or TypeError with a message naming the field and the fix.
    """
    if name_or_target in _OPTIONS:
        options_from_kwargs(_OPTIONS[name_or_target], options, name_or_target)
    else:
        resolve_factory(name_or_target)


def option_defaults(name: str) -> dict[str, Any]:
    """Default options of a built-in curriculum (for docs and config dumps)."""
    return dataclasses.asdict(_OPTIONS[name]())
