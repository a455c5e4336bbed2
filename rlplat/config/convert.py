"""Convert a composed mapping (from Hydra) into the typed ``Config``, once.

Unknown keys and wrong types raise ``ConfigError`` naming the dotted field and the fix, so a typo
such as ``grpo.total_stepz`` is caught before anything starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from rlplat.config.errors import ConfigError, did_you_mean
from rlplat.config.schema import Config

T = TypeVar("T")


def to_config(data: Mapping[str, Any]) -> Config:
    """Build a ``Config`` from a plain mapping; raises ``ConfigError`` on any mismatch."""
    return _build(Config, data, "")


def to_plain(cfg: Any) -> Any:
    """Inverse of ``to_config``: dataclasses to dicts, tuples to lists (for YAML/JSON dumps)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_plain(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_plain(v) for k, v in cfg.items()}
    return cfg


def _build(cls: type[T], data: Any, path: str) -> T:
    if not isinstance(data, Mapping):
        raise ConfigError(path or "<root>", f"expected a mapping, found {data!r}.",
                          "give this field a mapping of its sub-fields.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(where, f"unknown key '{key}'.{did_you_mean(str(key), names)}",
                              f"remove it or use one of: {', '.join(sorted(names))}.")
    kwargs = {k: _coerce(hints[k], v, f"{path}.{k}" if path else k) for k, v in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``, converting lists to tuples where declared."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin in (Union, types.UnionType):
        return _coerce_union(typing.get_args(tp), value, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(path, f"value {value!r} is not allowed.",
                              f"use one of {', '.join(repr(a) for a in allowed)}.")
        return value
    if origin is tuple:
        return _coerce_tuple(typing.get_args(tp), value, path)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping, found {value!r}.", "give a mapping.")
        return dict(value)
    if tp is Any:
        return value
    return _coerce_scalar(tp, value, path)


def _coerce_union(args: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return _coerce(arg, value, path)
        except ConfigError as err:
            errors.append(err)
    raise errors[0]


def _coerce_tuple(args: tuple[Any, ...], value: Any, path: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(path, f"expected a list, found {value!r}.", "give a list, e.g. [a, b].")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise ConfigError(path, f"expected {len(args)} items, found {len(value)}.",
                          f"give exactly {len(args)} items.")
    return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


def _coerce_scalar(tp: Any, value: Any, path: str) -> Any:
    # bool is an int subclass: reject True for int fields and 1 for bool fields explicitly.
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, tp)
    if not ok:
        name = getattr(tp, "__name__", str(tp))
        raise ConfigError(path, f"expected {name}, found {value!r} ({type(value).__name__}).",
                          f"set {path} to a {name}.")
    return value
