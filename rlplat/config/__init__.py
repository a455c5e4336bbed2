"""Typed configuration: Hydra composes YAML at the edge; everything past ``load_config`` is typed."""

from rlplat.config.errors import ConfigError
from rlplat.config.schema import Config

__all__ = ["Config", "ConfigError"]
