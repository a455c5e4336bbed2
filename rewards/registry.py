"""Where reward names come from, and how a reward config becomes a ``Reward``.

A name resolves, in order, to: a reward registered with ``@register_reward`` (the built-ins
``math``, ``code``, ``format`` and ``judge`` are registered lazily, so resolving ``math`` is what
first imports math-verify); an installed plugin in the entry-point group ``rlplat.rewards``; or a
dotted import path ``pkg.mod.attr`` / ``pkg.mod:attr`` (Hydra's ``_target_`` convention: the import
path is the registry). The registry refuses to silently replace a name with a different object.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, Callable, Mapping, TypeVar

from rewards.base import Reward, RewardError
from rewards.function import FunctionReward

ENTRY_POINT_GROUP = "rlplat.rewards"

_BUILTINS: dict[str, str] = {
    "math": "rewards.math:MathReward",
    "code": "rewards.code:CodeReward",
    "format": "rewards.format:FormatReward",
    "judge": "rewards.judge:JudgeReward",
}

# name -> (object as registered, default options given at registration)
_REGISTRY: dict[str, tuple[Any, dict[str, Any]]] = {}

T = TypeVar("T")


def register_reward(name: str, *, overwrite: bool = False, **defaults: Any) -> Callable[[T], T]:
    """Register a reward under ``name``; use as a decorator on a function or ``Reward`` subclass.

    Args:
        name: The name configs use (``components: {name: weight}``).
        overwrite: Replace an existing registration of a *different* object (re-registering the
            same function, e.g. when a module is imported again in a worker, is always allowed).
        **defaults: Default options, e.g. ``correct_threshold=0.5`` or ``on_error=-1.0``.

    Returns:
        A decorator that registers its argument and returns it unchanged.

    Example:
        >>> @register_reward("length_penalty")
        ... def length_penalty(inp: RewardInput) -> float:
        ...     return -len(inp.completion) / 10_000
    """
    if not isinstance(name, str) or not name:
        raise RewardError(f"reward name must be a non-empty string, got {name!r}")

    def decorator(obj: T) -> T:
        if not callable(obj):
            raise RewardError(f"@register_reward({name!r}) needs a function or Reward class, got {obj!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and not overwrite and _identity(existing[0]) != _identity(obj):
            raise RewardError(
                f"reward {name!r} is already registered by {_identity(existing[0])}; "
                f"pick another name or pass overwrite=True"
            )
        if name in _BUILTINS and not overwrite:
            raise RewardError(f"{name!r} is a built-in reward; pass overwrite=True to replace it")
        _REGISTRY[name] = (obj, dict(defaults))
        return obj

    return decorator


def registered_names() -> list[str]:
    """Names that resolve without an import path (built-ins, registered, installed plugins)."""
    plugins = {ep.name for ep in _entry_points()}
    return sorted(set(_BUILTINS) | set(_REGISTRY) | plugins)


def get_reward(spec: str | Mapping[str, Any] | Reward, **options: Any) -> Reward:
    """Build one reward from a name, a dotted path, a ``{"_target_": ...}`` mapping or an instance.

    Args:
        spec: ``"math"``, ``"my_pkg.rewards.fn"``, ``{"_target_": "my_pkg.Cls", "k": v}``, or a Reward.
        **options: Keyword options for the reward (for a user function: forwarded to it per call,
            except ``on_error``, ``correct_threshold`` and ``timeout_s``).

    Raises:
        RewardError: Unknown name, failed import or bad options (configuration, never model output).
    """
    if isinstance(spec, Reward):
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        target = spec.pop("_target_", None)
        if not isinstance(target, str):
            raise RewardError(f"a reward mapping needs a '_target_' import path, got {spec!r}")
        return _instantiate(import_object(target), target.replace(":", ".").rsplit(".", 1)[-1], {**spec, **options})
    if not isinstance(spec, str):
        raise RewardError(f"reward spec must be a name, a mapping or a Reward, got {type(spec).__name__}")
    obj, defaults = _lookup(spec)
    return _instantiate(obj, spec, {**defaults, **options})


def import_object(path: str) -> Any:
    """Import ``pkg.mod:attr`` or ``pkg.mod.attr`` (the longest importable module prefix wins)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
        parts = [module_name, *attr.split(".")]
        split_points = [1]
    else:
        parts = path.split(".")
        split_points = list(range(len(parts) - 1, 0, -1))
    for cut in split_points:
        module_name = ".".join(parts[:cut])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                continue  # this prefix is not a module; try a shorter one
            raise RewardError(f"importing {module_name!r} for reward {path!r} failed: {exc}") from exc
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError as exc:
            raise RewardError(f"{path!r}: {exc}") from exc
        return obj
    raise RewardError(f"cannot import reward {path!r}: no importable module prefix")


def import_modules(modules: list[str] | tuple[str, ...] | str | None) -> None:
    """Import user modules so that their ``@register_reward`` decorators run."""
    if modules is None:
        return
    for module in [modules] if isinstance(modules, str) else modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - reported as a config error naming the module
            raise RewardError(f"importing reward module {module!r} failed: {exc!r}") from exc


def _lookup(name: str) -> tuple[Any, dict[str, Any]]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTINS:
        return import_object(_BUILTINS[name]), {}
    for ep in _entry_points():
        if ep.name == name:
            try:
                return ep.load(), {}
            except Exception as exc:  # noqa: BLE001 - a broken plugin is a config error
                raise RewardError(f"loading reward plugin {name!r} ({ep.value}) failed: {exc!r}") from exc
    if "." in name or ":" in name:
        return import_object(name), {}
    raise RewardError(
        f"unknown reward {name!r}. Known: {', '.join(registered_names())}. Register one with "
        f"@register_reward({name!r}) in a module listed under 'modules', install a plugin in the "
        f"'{ENTRY_POINT_GROUP}' entry-point group, or give an import path like 'my_pkg.rewards.{name}'."
    )


def _entry_points() -> list[Any]:
    """Installed reward plugins (importlib.metadata is slow to import, so only on a registry miss)."""
    from importlib import metadata

    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _instantiate(obj: Any, name: str, options: dict[str, Any]) -> Reward:
    """A Reward instance is used as is, a Reward class is built with ``options``, a function wrapped."""
    if isinstance(obj, Reward):
        if options:
            raise RewardError(f"reward {name!r} is an instance; options {sorted(options)} cannot apply")
        return obj
    if inspect.isclass(obj):
        if not issubclass(obj, Reward):
            raise RewardError(f"reward {name!r} is a class but not a rewards.Reward subclass: {obj!r}")
        try:
            reward = obj(**options)
        except (TypeError, ValueError) as exc:
            raise RewardError(f"bad options for reward {name!r}: {exc}") from exc
        if reward.name in ("reward", ""):
            reward.name = name
        return reward
    return FunctionReward(obj, name=name, **options)


def _identity(obj: Any) -> str:
    """Source file + qualified name: the same definition imported twice (as ``__main__`` and as a
    module, or again in a spawned worker) is one reward, not a conflict."""
    code = getattr(obj, "__code__", None)
    if code is not None:
        where = code.co_filename
    else:
        module = sys.modules.get(getattr(obj, "__module__", ""))
        where = getattr(module, "__file__", None) or getattr(obj, "__module__", "?")
    return f"{os.path.realpath(where) if os.path.isabs(where) else where}:{getattr(obj, '__qualname__', repr(obj))}"
