"""Building curricula by name or by import path, on ``rlbase.Registry`` (the project's one plugin mechanism).

A reference resolves, in order, to a name registered with ``@register_curriculum``, a built-in
(``uniform``, ``progressive``; imported on first use), an installed plugin in the entry-point group
``rlplat.curricula``, or a dotted import path (``my_pkg.curricula.EasyFirst`` or
``my_pkg.curricula:EasyFirst``, Hydra's ``_target_`` idea) to a class or function.

Every curriculum is called with the keywords ``uids``, ``seed``, ``total_steps`` and ``store``, plus
its options, in one of two ways:

* It declares an options dataclass: ``options=`` of ``register_curriculum``, or an ``OPTIONS``
  class attribute (as the built-ins do: ``UniformCurriculum.OPTIONS = UniformOptions``). The config's
  option mapping is parsed into that frozen dataclass by ``rlbase.typed.from_mapping``, and the
  curriculum gets the instance as ``options=...``. An unknown key or a wrong type is an
  ``rlbase.FieldError`` naming ``curriculum.options.<key>``.
* It declares none: the options are passed as keywords, after checking them against its signature
  (unless it takes ``**kwargs``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from curricula.base import Curriculum
from curricula.store import PassRateStore
from rlbase import Component, PluginError, Registry, import_object, to_plain
from rlbase.registry import signature_options

Factory = Callable[..., Curriculum]
F = TypeVar("F", bound=Callable[..., Any])

ENTRY_POINT_GROUP = "rlplat.curricula"
OPTIONS_PATH = "curriculum.options"
# Keywords every curriculum receives from ``build_curriculum``; never options.
CONTEXT = ("uids", "seed", "total_steps", "store")
_PROTOCOL_METHODS = ("next_batch", "observe", "metrics", "state_dict", "load_state_dict")

# Imported on first use; each class names its options dataclass in ``OPTIONS``.
_BUILTINS = {
    "uniform": "curricula.uniform:UniformCurriculum",
    "progressive": "curricula.progressive:ProgressiveCurriculum",
}
_REGISTRY = Registry("curriculum", builtins=_BUILTINS, entry_point_group=ENTRY_POINT_GROUP)


def register_curriculum(name: str, *, options: type | None = None, overwrite: bool = False) -> Callable[[F], F]:
    """Decorator registering a curriculum class or factory under a short ``name``.

    Args:
        name: The name ``curriculum.name`` selects; no ``.`` or ``:`` (those mean an import path).
        options: Dataclass of its options; default: the decorated object's ``OPTIONS`` attribute if
            that is a dataclass, else none (options are then checked against its signature).
        overwrite: Replace a built-in or another object registered under ``name``. Registering the
            same definition again (a module imported again in a worker) needs no ``overwrite``.

    Raises:
        rlbase.PluginError (a ValueError): a dotted name, a name already registered (a built-in or
            another object), or an ``options`` that is not a dataclass.
    """
    if not isinstance(name, str) or not name or "." in name or ":" in name:
        raise PluginError(f"curriculum name {name!r} must be non-empty and must not contain '.' or ':' "
                          "(those mean an import path)")

    def decorator(factory: F) -> F:
        if name in _BUILTINS and not overwrite:
            raise PluginError(f"curriculum {name!r} is already registered (a built-in); "
                              "pick another name or pass overwrite=True")
        declared = options if options is not None else _declared_options(factory)
        return _REGISTRY.register(name, options=declared, overwrite=overwrite)(factory)

    return decorator


def _declared_options(target: object) -> type | None:
    """``target.OPTIONS`` when it is a dataclass type (how rlbase finds an import path's options too)."""
    declared = getattr(target, "OPTIONS", None)
    return declared if isinstance(declared, type) and dataclasses.is_dataclass(declared) else None


def available_curricula() -> list[str]:
    """Names that resolve without an import path: built-in, registered and installed plugins."""
    return _REGISTRY.names()


def resolve_curriculum(name_or_target: str) -> Component:
    """The ``rlbase.Component`` (target, options type) that ``name_or_target`` names.

    Raises:
        rlbase.PluginError (a ValueError): an unknown name, or an import path that does not import.
    """
    try:
        return _REGISTRY.resolve(name_or_target)
    except PluginError:
        if not isinstance(name_or_target, str) or ("." not in name_or_target and ":" not in name_or_target):
            raise
        try:  # was it the import that failed (rather than, say, a target that is not callable)?
            import_object(name_or_target)
        except PluginError as import_err:
            raise PluginError(
                f"cannot import curriculum {name_or_target!r}: {import_err} Check the module is importable "
                "(on PYTHONPATH, and shipped to Ray workers) and the name is spelled right") from import_err
        raise


def resolve_factory(name_or_target: str) -> Factory:
    """The class or function ``build_curriculum`` would call for ``name_or_target``."""
    factory: Factory = resolve_curriculum(name_or_target).target
    return factory


def curriculum_options(name_or_target: str, options: Mapping[str, Any] | None,
                       path: str = OPTIONS_PATH) -> Any:
    """The curriculum's options, parsed: what ``build_curriculum`` passes it.

    Returns:
        An instance of the curriculum's options dataclass (``UniformOptions``, ``ProgressiveOptions``,
        or a plugin's declared one), or, for a curriculum that declares none, the checked ``dict``.

    Raises:
        rlbase.FieldError (a ValueError): an unknown key (with a did-you-mean hint and the valid
            keys), a wrong type or an out-of-range value, naming ``<path>.<key>`` (or ``<path>``
            for a range check).
        rlbase.PluginError (a ValueError): ``name_or_target`` does not resolve.
    """
    return resolve_curriculum(name_or_target).parse_options(options, path, CONTEXT)


def curriculum_option_types() -> dict[str, type]:
    """Options dataclass of every name in ``available_curricula()`` that declares one.

    The run config publishes each type's defaults as a Hydra config-group entry, so that
    ``curriculum=progressive`` selects the curriculum together with its typed default options. An
    installed plugin that fails to load is left out here; selecting it reports the error.
    """
    types: dict[str, type] = {}
    for name in available_curricula():
        try:
            component = resolve_curriculum(name)
        except PluginError:
            continue
        if component.options is not None:
            types[name] = component.options
    return types


def build_curriculum(name_or_target: str, *, uids: Sequence[str], seed: int = 0, total_steps: int | None = None,
                     store: PassRateStore | None = None, **options: Any) -> Curriculum:
    """Build a curriculum from a registered name or an import path.

    Args:
        name_or_target: ``"uniform"``, ``"progressive"``, another registered name, or a dotted
            import path to a class/function.
        uids: The dataset's prompt ids; ``next_batch`` returns indices into them.
        seed: Seed of the curriculum's RNG.
        total_steps: Steps of the run (the progressive schedule's length; it requires one).
        store: Pass-rate store to start from (e.g. ``PassRateStore.from_table``); None: empty.
        **options: The curriculum's options as flat keywords (``sigma=0.1``), parsed by
            ``curriculum_options``.

    Raises:
        rlbase.PluginError (a ValueError): unknown name, or a path that does not import.
        rlbase.FieldError (a ValueError): an unknown or invalid option, naming ``curriculum.options.<key>``.
        TypeError: the built object lacks a ``Curriculum`` method.
    """
    component = resolve_curriculum(name_or_target)
    parsed = component.parse_options(options, OPTIONS_PATH, CONTEXT)
    context: dict[str, Any] = {"uids": uids, "seed": seed, "total_steps": total_steps, "store": store}
    if component.options is not None:
        curriculum = component.target(**context, options=parsed)
    else:
        curriculum = component.target(**context, **parsed)
    missing = [m for m in _PROTOCOL_METHODS if not callable(getattr(curriculum, m, None))]
    if missing:
        raise TypeError(f"{name_or_target!r} built {type(curriculum).__name__}, which lacks {', '.join(missing)}; "
                        "a curriculum needs next_batch, observe, metrics, state_dict, load_state_dict")
    built: Curriculum = curriculum
    return built


def check_curriculum_config(name_or_target: str, options: Mapping[str, Any]) -> None:
    """Validate a curriculum config before any work starts (no dataset needed).

    The name must resolve (an import path is imported) and every option must fit: for a curriculum
    with an options dataclass, keys, types and ranges; otherwise, keys against its signature.

    Raises:
        rlbase.PluginError or rlbase.FieldError (both ValueError) naming the field and the fix.
    """
    curriculum_options(name_or_target, options)


def option_defaults(name_or_target: str) -> dict[str, Any]:
    """Default options of a curriculum (for docs and config dumps): its options dataclass's
    defaults, or the defaults of the option keywords of its signature."""
    component = resolve_curriculum(name_or_target)
    if component.options is not None:
        defaults: dict[str, Any] = to_plain(component.options())
        return defaults
    allowed = signature_options(component.target, CONTEXT) or []
    params = inspect.signature(component.target).parameters if allowed else {}
    return {k: params[k].default for k in allowed if params[k].default is not inspect.Parameter.empty}
