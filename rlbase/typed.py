"""Plain mappings to typed, frozen dataclasses, strictly; and back.

``from_mapping(cls, data, path)`` rejects unknown keys (with a did-you-mean hint) and values of the
wrong type, converts lists to tuples where a tuple is declared, checks ``Literal`` choices, and builds
nested dataclasses. Every error is a ``FieldError`` naming the dotted field. The run config
(``rlplat.config``) and every component's options (``rlbase.registry``) are parsed by it, so a typo in
``grpo.total_stepz`` and one in ``curriculum.options.sigmaa`` read the same.

A field named after a Python keyword with a trailing underscore (PEP 8's convention, e.g.
``async_``) has the keyword itself as its key (``grpo.async.max_staleness``): see ``field_key``.
"""

from __future__ import annotations

import dataclasses
import keyword
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from rlbase.errors import FieldError, did_you_mean

T = TypeVar("T")


def field_key(name: str) -> str:
    """The mapping key of the dataclass field ``name``: ``async_`` -> ``async``, others unchanged."""
    return name[:-1] if name.endswith("_") and keyword.iskeyword(name[:-1]) else name


def field_keys(cls: Any) -> dict[str, str]:
    """``{key: field name}`` of the dataclass ``cls``, in field order."""
    return {field_key(f.name): f.name for f in dataclasses.fields(cls)}


def from_mapping(cls: type[T], data: Any, path: str = "") -> T:
    """Build the dataclass ``cls`` from ``data``; raises ``FieldError`` on any mismatch.

    ``dataclass.__post_init__`` checks that raise ``ValueError`` or ``TypeError`` are reported as a
    ``FieldError`` at ``path`` too.
    """
    if not isinstance(data, Mapping):
        where = path or "<root>"
        raise FieldError(where, f"'{where}' is a section of fields ({', '.join(field_keys(cls))})"
                         f", found the value {data!r}.", f"set its fields one by one ({where}.<field>=VALUE) or "
                         f"give a mapping ({where}={{<field>: VALUE}}).")
    hints = typing.get_type_hints(cls)
    keys = field_keys(cls)
    for key in data:
        if key not in keys:
            where = f"{path}.{key}" if path else str(key)
            raise FieldError(where, f"unknown key '{key}'.{did_you_mean(str(key), list(keys))}",
                             f"remove it or use one of: {', '.join(sorted(keys))}.")
    kwargs = {keys[str(k)]: coerce(hints[keys[str(k)]], v, f"{path}.{k}" if path else str(k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        if isinstance(err, FieldError):
            raise
        raise FieldError(path or "<root>", f"{str(err).rstrip('.')}.", "correct the value.") from err


def to_plain(value: Any) -> Any:
    """Inverse of ``from_mapping``: dataclasses to dicts, tuples to lists (for YAML/JSON dumps)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field_key(f.name): to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``, converting lists to tuples where declared."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, path)  # type: ignore[arg-type]
    if origin in (Union, types.UnionType):
        return _coerce_union(typing.get_args(tp), value, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise FieldError(path, f"value {value!r} is not allowed.",
                             f"use one of {', '.join(repr(a) for a in allowed)}.")
        return value
    if origin is tuple:
        return _coerce_tuple(typing.get_args(tp), value, path)
    if origin is dict or tp is dict:
        return _coerce_dict(typing.get_args(tp), value, path)
    if tp is Any:
        return value
    return _coerce_scalar(tp, value, path)


def _coerce_union(args: tuple[Any, ...], value: Any, path: str) -> Any:
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return coerce(arg, value, path)
        except FieldError as err:
            errors.append(err)
    raise errors[0]


def _coerce_tuple(args: tuple[Any, ...], value: Any, path: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise FieldError(path, f"expected a list, found {value!r}.", "give a list, e.g. [a, b].")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise FieldError(path, f"expected {len(args)} items, found {len(value)}.", f"give exactly {len(args)} items.")
    return tuple(coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))


def _coerce_dict(args: tuple[Any, ...], value: Any, path: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise FieldError(path, f"expected a mapping, found {value!r}.", "give a mapping, e.g. {a: 1}.")
    if not args:
        return dict(value)
    key_tp, value_tp = args
    return {coerce(key_tp, k, path): coerce(value_tp, v, f"{path}.{k}") for k, v in value.items()}


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
        raise FieldError(path, f"expected {name}, found {value!r} ({type(value).__name__}).",
                         f"set {path} to a {name}.")
    return value
