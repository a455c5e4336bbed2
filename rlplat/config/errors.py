"""The one error type users see for bad configuration or data, before any work starts."""

from __future__ import annotations

from rlbase import FieldError, did_you_mean

__all__ = ["ConfigError", "did_you_mean"]


class ConfigError(FieldError):
    """A configuration or input problem the user can fix.

    The launcher prints ``str(err)`` as one paragraph and exits with code 2, before Ray starts.

    Args:
        field: Dotted config path of the offending field (for example ``grpo.global_batch``).
        problem: What is wrong, with the value found.
        fix: What to do about it, phrased as an instruction.
    """

    @classmethod
    def wrap(cls, err: FieldError) -> ConfigError:
        """The same message as a ``ConfigError`` (``rlbase`` raises plain ``FieldError``)."""
        return err if isinstance(err, ConfigError) else cls(err.field, err.problem, err.fix)
