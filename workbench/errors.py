"""The workbench's own error types, in a leaf module every layer can raise from.

Each message says what is wrong and what to change; in Jupyter they print as that message,
not as a traceback (``_render_traceback_``). ``DatasetError`` (bad data, with file, line and
field) lives with the data layer in ``workbench.data.problems``.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Iterable


class ConfigError(ValueError):
    """A configuration value or key that is not allowed; the message says what is."""


class Cancelled(Exception):
    """Work the user cancelled (a Cancel button's event); nothing half-done is reported as a result."""


class ModelNotFoundError(ConfigError):
    """A model or tokenizer name that is no local folder or file, no preset, and no hub model in the local cache."""

    def _render_traceback_(self) -> list[str]:
        return [f"ModelNotFoundError: {self}"]


def model_not_found(name: str | Path, error: BaseException, presets: Iterable[str] = ()) -> ModelNotFoundError:
    """The one-line error for a model or tokenizer that ``from_pretrained`` could not load (its ``OSError``).

    Args:
        name: What the user named: a folder, a file, a preset or a hub id.
        error: The loader's error (or a ``ModelNotFoundError`` to add the presets to).
        presets: The preset names to list in the fix.
    """
    known = f" Presets: {', '.join(presets)}." if presets else ""
    if isinstance(error, ModelNotFoundError):
        return ModelNotFoundError(f"{error}{known}")
    if Path(str(name)).expanduser().exists():
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        return ModelNotFoundError(f"{name}: {first} Fix: point at a folder written by save_pretrained (config.json, "
                                  f"the weights and the tokenizer files) or at a .gguf file.{known}")
    return ModelNotFoundError(f"{str(name)!r} is not a local folder or file, not a preset, and no hub model of that "
                              "name is in the local cache (the hub is offline or out of reach). Fix: name a model "
                              "folder, a .gguf file, a preset, or a hub id downloaded beforehand." + known)


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to change."""

    def _render_traceback_(self) -> list[str]:
        return [f"TrainingError: {self}"]


def os_error_message(error: OSError) -> str:
    """One line for an ``OSError`` the user can act on (a full disk, no permission, a missing path), with the fix.

    The command line prints this instead of a traceback; the file comes first, as in data problems.
    """
    where = error.filename or ""
    if error.filename2:
        where = f"{where} -> {error.filename2}"
    what = error.strerror or str(error) or type(error).__name__
    fixes = {
        errno.ENOSPC: "The disk is full: free space there (`df -h` shows which disk), or write to another "
                      "folder, then run the command again.",
        errno.EDQUOT: "Your disk quota is used up: free space, or write to another folder, then run it again.",
        errno.EACCES: "You lack permission: give your user access (`ls -l` shows the owner and mode; `chmod u+rw` "
                      "on a file, `chmod u+rwx` on a folder), or use another path.",
        errno.EPERM: "The operation is not permitted there: use a folder you own.",
        errno.EROFS: "That file system is read-only: write to another folder.",
        errno.ENOENT: "Check the path (a folder in it may be missing).",
        errno.EIO: "The disk reported an I/O error: check the drive or network share, then run it again.",
    }
    fix = fixes.get(error.errno, "Check the path and the disk, then run the command again.")
    return f"{where + ': ' if where else ''}{what} (errno {error.errno}). Fix: {fix}"
