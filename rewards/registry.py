"""Where reward names come from, and how a reward config becomes a ``Reward``.

Rewards are one kind of component of ``rlbase.Registry``, the project's one plugin mechanism. A
name resolves, in order, to: a reward registered with ``@register_reward``; a built-in (``math``,
``code``, ``format``, ``judge``, imported lazily, so resolving ``math`` is what first imports
math-verify); an installed plugin in the entry-point group ``rlplat.rewards``. A reference with a
``.`` or ``:`` is a dotted import path ``pkg.mod.attr`` / ``pkg.mod:attr`` instead, imported by
``rlbase.import_object`` (Hydra's ``_target_`` convention: the import path is the registry); it may
name a Reward class, a function or a ready Reward instance. The registry refuses to silently
replace a name with a different object.

Options are checked when the reward is built: an option that the reward does not take raises
``RewardError`` naming it and listing the valid ones. The valid options of a ``Reward`` class are
the keyword parameters of its ``__init__`` (or the fields of its ``OPTIONS`` dataclass, which are
type-checked too); those of a function are its keyword parameters plus ``on_error``,
``correct_threshold`` and ``timeout_s``. A reward that takes ``**kwargs`` accepts anything.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from rewards.base import Reward, RewardError
from rewards.function import FUNCTION_OPTIONS, FunctionReward
from rlbase import Component, FieldError, PluginError, Registry, did_you_mean, import_object
from rlbase.registry import signature_options

ENTRY_POINT_GROUP = "rlplat.rewards"

BUILTINS: dict[str, str] = {
    "math": "rewards.math:MathReward",
    "code": "rewards.code:CodeReward",
    "format": "rewards.format:FormatReward",
    "judge": "rewards.judge:JudgeReward",
}

REGISTRY = Registry("reward", builtins=BUILTINS, entry_point_group=ENTRY_POINT_GROUP)

T = TypeVar("T")


def register_reward(name: str, *, overwrite: bool = False, **defaults: Any) -> Callable[[T], T]:
    """Register a reward under ``name``; use as a decorator on a function or ``Reward`` subclass.

    Args:
        name: The name configs use (``components: {name: weight}``); no ``.`` or ``:`` (those
            mean an import path).
        overwrite: Replace an existing registration of a *different* object, or a built-in
            (re-registering the same function, e.g. when a module is imported again in a worker,
            is always allowed).
        **defaults: Default options, e.g. ``correct_threshold=0.5`` or ``on_error=-1.0``.

    Returns:
        A decorator that registers its argument and returns it unchanged.

    Raises:
        RewardError: A bad name, a taken name, or something that is not a function or class.

    Example:
        >>> @register_reward("length_penalty")
        ... def length_penalty(inp: RewardInput) -> float:
        ...     return -len(inp.completion) / 10_000
    """
    if not isinstance(name, str) or not name or "." in name or ":" in name:
        raise RewardError(f"reward name must be a non-empty string without '.' or ':' "
                          f"(those mean an import path), got {name!r}")

    def decorator(obj: T) -> T:
        # Registry.add, not Registry.register: a user reward may well have an option called
        # "options", which register() would take for its own options-dataclass parameter.
        try:
            REGISTRY.add(Component(REGISTRY.kind, name, obj, _declared_options(obj), dict(defaults)),
                         overwrite=overwrite)
        except PluginError as exc:
            raise RewardError(f"@register_reward({name!r}): {exc}") from exc
        return obj

    return decorator


def registered_names() -> list[str]:
    """Names that resolve without an import path (built-ins, registered, installed plugins)."""
    return REGISTRY.names()


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
        if options:
            raise RewardError(f"reward {spec.name!r} is an instance; options {sorted(options)} cannot apply")
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        target = spec.pop("_target_", None)
        if not isinstance(target, str):
            raise RewardError(f"a reward mapping needs a '_target_' import path, got {spec!r}")
        try:
            obj = import_object(target)
        except PluginError as exc:
            raise RewardError(f"reward _target_ {target!r}: {exc}") from exc
        name = target.replace(":", ".").rsplit(".", 1)[-1]
        return _instantiate(_component(name, obj), {**spec, **options})
    if not isinstance(spec, str):
        raise RewardError(f"reward spec must be a name, a mapping or a Reward, got {type(spec).__name__}")
    return _instantiate(_resolve(spec), options)


def import_modules(modules: list[str] | tuple[str, ...] | str | None) -> None:
    """Import user modules so that their ``@register_reward`` decorators run."""
    if modules is None:
        return
    for module in [modules] if isinstance(modules, str) else modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise RewardError(f"importing reward module {module!r} failed: {exc!r}") from exc


def _resolve(name: str) -> Component:
    if "." in name or ":" in name:
        # An import path (no registered name has one). Imported here rather than by
        # Registry.resolve, which accepts only classes and functions: a path may also name a
        # Reward instance, used as is.
        try:
            return _component(name, import_object(name))
        except PluginError as exc:
            raise RewardError(str(exc)) from exc
    try:
        return REGISTRY.resolve(name)
    except PluginError as exc:
        if not name or name in REGISTRY.names():
            raise RewardError(str(exc)) from exc  # a broken built-in or plugin: its own message
        raise RewardError(
            f"unknown reward {name!r}.{did_you_mean(name, REGISTRY.names())} Known: {', '.join(REGISTRY.names())}. "
            f"Register one with @register_reward({name!r}) in a module listed under 'modules', install a plugin "
            f"in the '{ENTRY_POINT_GROUP}' entry-point group, or give an import path like 'my_pkg.rewards.{name}'."
        ) from exc


def _declared_options(obj: Any) -> type | None:
    """The ``OPTIONS`` dataclass a Reward class may declare (as ``rlbase.Registry`` reads it), or None."""
    declared = getattr(obj, "OPTIONS", None)
    return declared if isinstance(declared, type) and dataclasses.is_dataclass(declared) else None


def _component(name: str, obj: Any) -> Component:
    """A ``_target_`` object as a component."""
    return Component(REGISTRY.kind, name, obj, _declared_options(obj))


def _instantiate(component: Component, options: Mapping[str, Any]) -> Reward:
    """A Reward instance is used as is, a Reward class is built with the options, a function wrapped."""
    obj, name = component.target, component.name
    if isinstance(obj, Reward):
        if options or component.defaults:
            raise RewardError(f"reward {name!r} is an instance; options {sorted({**component.defaults, **options})} "
                              "cannot apply")
        return obj
    path = f"reward.options.{name}"
    if inspect.isclass(obj):
        if not issubclass(obj, Reward):
            raise RewardError(f"reward {name!r} is a class but not a rewards.Reward subclass: {obj!r}")
        kwargs = _parse(component, options, path)
        try:
            reward = obj(**kwargs)
        except (TypeError, ValueError) as exc:
            raise RewardError(f"bad options for reward {name!r}: {exc}") from exc
        if reward.name in ("reward", ""):
            reward.name = name
        return reward
    if not callable(obj):
        raise RewardError(f"reward {name!r} resolved to {obj!r}, which is not a function or Reward class")
    merged = {**component.defaults, **options}
    allowed = signature_options(obj)
    if allowed is not None:
        _check_keys(name, merged, [*allowed, *FUNCTION_OPTIONS], path)
    try:
        return FunctionReward(obj, name=name, **merged)
    except (TypeError, ValueError) as exc:
        raise RewardError(f"bad options for reward {name!r}: {exc}") from exc


def _parse(component: Component, options: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The keyword arguments of a Reward class, checked by ``Component.parse_options``."""
    try:
        parsed = component.parse_options(options, path)
    except FieldError as exc:
        raise RewardError(f"bad options for reward {component.name!r}: {exc}") from exc
    if dataclasses.is_dataclass(parsed) and not isinstance(parsed, type):
        return {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)}
    return dict(parsed)


def _check_keys(name: str, options: Mapping[str, Any], allowed: list[str], path: str) -> None:
    for key in options:
        if key not in allowed:
            error = FieldError(f"{path}.{key}", f"reward {name!r} takes no option '{key}'.{did_you_mean(key, allowed)}",
                               f"use one of: {', '.join(sorted(allowed))}.")
            raise RewardError(f"bad options for reward {name!r}: {error}") from error
