"""The one plugin mechanism: components chosen by name or import path, with typed options.

A ``Registry`` holds one kind of component (rewards, curricula, advantage estimators, stages). A
reference to a component is a string that resolves, in order, to:

1. a name registered with ``Registry.register`` (``@register_reward("concise")``);
2. a built-in, imported lazily from ``"module:attr"`` the first time it is used;
3. an installed plugin in the registry's entry-point group;
4. a dotted import path, ``pkg.mod.Obj`` or ``pkg.mod:Obj`` (Hydra's ``_target_`` convention).

A component may declare its options as a frozen dataclass (``options=MyOptions``). Its option
mapping from the config is then parsed by ``rlbase.typed.from_mapping``: an unknown key or a wrong
type is a ``FieldError`` naming ``<kind>.options.<key>`` and the valid keys. Without a declared
dataclass the options are checked against the keyword parameters of the component's signature.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rlbase.errors import FieldError, PluginError, did_you_mean
from rlbase.imports import import_object
from rlbase.typed import from_mapping

F = TypeVar("F")


@dataclass(frozen=True)
class Component:
    """A resolved component.

    Attributes:
        kind: The registry's kind ("reward", "curriculum", ...), for messages.
        name: The reference it was resolved from.
        target: The class or function.
        options: Dataclass type of its options, or None (options checked against the signature).
        defaults: Option values given at registration, applied under the config's.
    """

    kind: str
    name: str
    target: Any
    options: type | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def parse_options(self, options: Mapping[str, Any] | None, path: str,
                      context: Iterable[str] = ()) -> Any:
        """The component's options: a dataclass instance when it declares one, else a checked dict.

        Args:
            options: The config's option mapping (None: defaults only).
            path: Dotted config path of the mapping, for errors (``curriculum.options``).
            context: Parameter names the caller passes itself (``uids``, ``seed``...), never options.
        """
        merged = {**self.defaults, **(options or {})}
        if self.options is not None:
            return from_mapping(self.options, merged, path)
        allowed = signature_options(self.target, context)
        if allowed is None:
            return merged
        for key in merged:
            if key not in allowed:
                raise FieldError(f"{path}.{key}", f"{self.kind} {self.name!r} takes no option '{key}'."
                                 f"{did_you_mean(key, allowed)}",
                                 f"use one of: {', '.join(sorted(allowed)) or '(none)'}.")
        return merged


def signature_options(target: Any, context: Iterable[str] = ()) -> list[str] | None:
    """Keyword parameters of ``target`` (its ``__init__`` for a class) minus ``context``; None when
    it takes ``**kwargs`` (anything goes) or has no inspectable signature."""
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    skip = set(context)
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    # The first positional parameter of a function is its input (``inp``, ``rewards``), not an option.
    first = next((p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                  and p.default is p.empty), None) if not inspect.isclass(target) else None
    return [p.name for p in params if p.kind in kinds and p.name not in skip and p.name != first]


class Registry:
    """Components of one kind, by name; see the module docstring for how a reference resolves."""

    def __init__(self, kind: str, *, builtins: Mapping[str, str] | None = None,
                 entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._builtins = dict(builtins or {})
        self._registered: dict[str, Component] = {}
        self._group = entry_point_group

    def register(self, name: str, *, options: type | None = None, overwrite: bool = False,
                 **defaults: Any) -> Callable[[F], F]:
        """Decorator registering a class or function under ``name``.

        Re-registering the same definition (a module imported again in a worker process) is allowed;
        a different object under a taken name needs ``overwrite=True``.

        Raises:
            PluginError: bad name, a taken name, or an ``options`` type that is not a dataclass.
        """
        if not isinstance(name, str) or not name or "." in name or ":" in name:
            raise PluginError(f"{self.kind} name must be a non-empty string without '.' or ':' "
                              f"(those mean an import path), got {name!r}")
        if options is not None and not dataclasses.is_dataclass(options):
            raise PluginError(f"options of {self.kind} {name!r} must be a dataclass type, got {options!r}")

        def decorator(obj: F) -> F:
            declared = options or getattr(obj, "OPTIONS", None)
            self.add(Component(self.kind, name, obj, declared, dict(defaults)), overwrite=overwrite)
            return obj

        return decorator

    def add(self, component: Component, *, overwrite: bool = False) -> None:
        """Register an already built ``Component`` (see ``register``)."""
        name, old = component.name, self._registered.get(component.name)
        if not callable(component.target):
            raise PluginError(f"{self.kind} {name!r} must be a class or function, got {component.target!r}")
        if not overwrite and name in self._builtins:
            raise PluginError(f"{name!r} is a built-in {self.kind}; pass overwrite=True to replace it")
        if not overwrite and old is not None and identity(old.target) != identity(component.target):
            raise PluginError(f"{self.kind} {name!r} is already registered by {identity(old.target)}; "
                              "pick another name or pass overwrite=True")
        self._registered[name] = component

    def names(self) -> list[str]:
        """Names that resolve without an import path (registered, built-in, installed plugins)."""
        return sorted(set(self._registered) | set(self._builtins) | {ep.name for ep in self._entry_points()})

    def resolve(self, ref: str) -> Component:
        """The component ``ref`` names; raises ``PluginError`` listing the known names otherwise."""
        if not isinstance(ref, str) or not ref:
            raise PluginError(f"a {self.kind} is named by a non-empty string, got {ref!r}")
        if ref in self._registered:
            return self._registered[ref]
        if ref in self._builtins:
            return self._from_target(ref, import_object(self._builtins[ref]))
        for ep in self._entry_points():
            if ep.name == ref:
                try:
                    return self._from_target(ref, ep.load())
                except Exception as exc:
                    raise PluginError(f"loading {self.kind} plugin {ref!r} ({ep.value}) failed: {exc!r}") from exc
        if "." in ref or ":" in ref:
            return self._from_target(ref, import_object(ref))
        raise PluginError(f"unknown {self.kind} {ref!r}.{did_you_mean(ref, self.names())} Known: "
                          f"{', '.join(self.names())}; or give an import path such as 'my_pkg.module.{ref}'.")

    def _from_target(self, ref: str, target: Any) -> Component:
        if not callable(target):
            raise PluginError(f"{self.kind} {ref!r} resolved to {target!r}, which is not a class or function")
        # A target may carry its own options type (``OPTIONS = MyOptions`` on a class).
        options = getattr(target, "OPTIONS", None)
        return Component(self.kind, ref, target, options if isinstance(options, type) and dataclasses.is_dataclass(options) else None)

    def _entry_points(self) -> list[Any]:
        if self._group is None:
            return []
        from importlib import metadata  # slow to import: only when a name misses

        return list(metadata.entry_points(group=self._group))


def identity(obj: Any) -> str:
    """Source file + qualified name: the same definition imported twice (as ``__main__`` and as a
    module, or again in a spawned worker) is one component, not a conflict."""
    import os
    import sys

    code = getattr(obj, "__code__", None)
    if code is not None:
        where = code.co_filename
    else:
        module = sys.modules.get(getattr(obj, "__module__", ""))
        where = getattr(module, "__file__", None) or getattr(obj, "__module__", "?")
    return f"{os.path.realpath(where) if os.path.isabs(where) else where}:{getattr(obj, '__qualname__', repr(obj))}"
