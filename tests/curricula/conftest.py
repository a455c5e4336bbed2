"""Fixtures of the curricula tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from curricula import registry
from rlbase import Registry


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A curriculum registry holding only the built-ins, so a test's registrations do not leak."""
    fresh = Registry("curriculum", builtins=registry._BUILTINS, entry_point_group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "_REGISTRY", fresh)
    yield fresh
