"""rlbase: the few pieces that ``rlplat``, ``rewards`` and ``curricula`` all stand on.

Standard library only, importable anywhere (a reward worker, a Ray actor, a test), and it imports
none of the three packages above it:

* ``import_object`` and ``Registry``: the one plugin mechanism. A component (reward, curriculum,
  advantage estimator, stage) is chosen by a registered name or by a dotted import path
  (Hydra's ``_target_`` idea), and its options are parsed into a typed, frozen dataclass.
* ``from_mapping``: a plain mapping to a typed frozen dataclass, strictly (unknown keys and wrong
  types raise ``FieldError`` naming the dotted field and the fix). The run config uses it too.
* ``atomic_write`` / ``atomic_writer``: write a file so that a crash never leaves half of it;
  ``append_line``: grow a log so that a crash loses no line written.
"""

from rlbase.errors import FieldError, PluginError, did_you_mean
from rlbase.files import append_line, atomic_write, atomic_writer, write_jsonl
from rlbase.imports import import_object
from rlbase.registry import Component, Registry
from rlbase.typed import field_keys, from_mapping, to_plain

__all__ = [
    "Component",
    "FieldError",
    "PluginError",
    "Registry",
    "append_line",
    "atomic_write",
    "atomic_writer",
    "did_you_mean",
    "field_keys",
    "from_mapping",
    "import_object",
    "to_plain",
    "write_jsonl",
]
