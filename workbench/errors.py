"""The workbench's own error types, in a leaf module every layer can raise from.

Each message says what is wrong and what to change; in Jupyter they print as that message,
not as a traceback (``_render_traceback_``). ``DatasetError`` (bad data, with file, line and
field) lives with the data layer in ``workbench.data.problems``.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value or key that is not allowed; the message says what is."""


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to change."""

    def _render_traceback_(self) -> list[str]:
        return [f"TrainingError: {self}"]
