"""Convert a composed mapping (from Hydra) into the typed ``Config``, once.

Unknown keys and wrong types raise ``ConfigError`` naming the dotted field and the fix, so a typo
such as ``grpo.total_stepz`` is caught before anything starts (``rlbase.typed`` does the work; the
options of components are parsed by the same code).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlbase import FieldError, from_mapping, to_plain
from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config

__all__ = ["to_config", "to_plain"]


def to_config(data: Mapping[str, Any]) -> Config:
    """Build a ``Config`` from a plain mapping; raises ``ConfigError`` on any mismatch."""
    try:
        return from_mapping(Config, data)
    except FieldError as err:
        raise ConfigError.wrap(err) from err
