"""Problems found in data, and the one exception that carries them.

Every problem names where it is (file, line or row, field), what is wrong, and what to
do about it. ``DatasetError`` carries a list of them; its message shows the first few
with a count, and it renders without a traceback in IPython (``_render_traceback_``)
so a user with bad data sees the problems, not a wall of library frames.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

Severity = Literal["error", "warning"]

#: The kinds of problem the data layer reports; tests and panels filter on them.
PROBLEM_KINDS = (
    "not_found",
    "unsupported_file",
    "empty_file",
    "header_only",
    "encoding",
    "malformed_json",
    "malformed_csv",
    "malformed_parquet",
    "not_records",
    "missing_field",
    "empty_field",
    "wrong_type",
    "unknown_role",
    "no_assistant_turn",
    "rare_label",
    "ambiguous_format",
    "unknown_format",
    "unknown_column",
    "hub_unreachable",
    "binary",            # not text: NUL bytes, or another file type (an Excel workbook, gzip) under a text suffix
    "unreadable",        # the file or folder cannot be read (permissions, an I/O error)
    "outside_source",    # a symbolic link in a data folder to a file or folder outside it (not followed)
    "duplicate_column",  # two columns that detection cannot tell apart ('text' and 'Text ')
    "no_user_turn",      # a conversation with an assistant reply but no user turn to answer
    "single_class",      # every record has the same label: nothing for a classifier to tell apart
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data.

    Attributes:
        kind: One of ``PROBLEM_KINDS``.
        message: What is wrong, in a sentence.
        fix: What the user can do about it.
        file: The file it is in, when the data came from a file.
        line: 1-based line in that file, for text formats.
        row: 0-based position of the record in the loaded dataset (as pandas' ``iloc``).
        field: The field (column) concerned.
        severity: ``error`` rows are dropped in lenient mode and raise in strict mode;
            ``warning`` is reported only.
    """

    kind: str
    message: str
    fix: str = ""
    file: str | None = None
    line: int | None = None
    row: int | None = None
    field: str | None = None
    severity: Severity = "error"

    @property
    def where(self) -> str:
        """``file:line`` (or ``file``, ``row N``), field included, for messages."""
        parts = []
        if self.file:
            name = self.file
            if self.line is not None:
                name += f":{self.line}"
            parts.append(name)
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.row is not None and self.line is None:
            parts.append(f"row {self.row}")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ", ".join(parts) or "dataset"

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


def format_problems(problems: Iterable[Problem], limit: int = 10) -> str:
    """Render problems as lines, the first ``limit`` in full and the rest as counts by kind."""
    problems = list(problems)
    lines = [f"  - {p}" for p in problems[:limit]]
    rest = problems[limit:]
    if rest:
        counts = Counter(p.kind for p in rest)
        summary = ", ".join(f"{n} {k}" for k, n in counts.most_common())
        lines.append(f"  ... and {len(rest)} more ({summary})")
    return "\n".join(lines)


class DatasetError(ValueError):
    """Bad data or a bad request about data; ``problems`` lists every finding."""

    def __init__(self, problems: list[Problem] | Problem, limit: int = 10):
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        self.limit = limit
        super().__init__(self._message())

    def _message(self) -> str:
        n = len(self.problems)
        files = sorted({p.file for p in self.problems if p.file})
        where = f" in {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}" if files else ""
        head = f"{n} problem{'s' if n != 1 else ''}{where}"
        if n > self.limit:
            head += f" (first {self.limit} shown)"
        return f"{head}:\n{format_problems(self.problems, self.limit)}"

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing the traceback: the problems are the message.
        return [f"DatasetError: {self}"]


def unreadable_problem(path: str | Path, error: OSError) -> Problem:
    """The problem for a file or folder the operating system would not let us read (its ``OSError``)."""
    file = display_path(path)
    reason = error.strerror or type(error).__name__
    if isinstance(error, PermissionError):
        fix = (f"Give your user read access (e.g. `chmod u+r {file}`, or `chmod u+rx` for a folder), "
               "or copy the data somewhere you can read it.")
    else:
        fix = "Check the disk and the file (an unmounted drive, a network share gone away, a full disk), then retry."
    return Problem(kind="unreadable", file=file, message=f"cannot be read: {reason} (errno {error.errno}).", fix=fix)


def outside_link_problem(path: Path, root: Path, action: str = "loaded") -> Problem | None:
    """A refusal when ``path`` is a symbolic link whose target lies outside the folder ``root``; None otherwise.

    A folder of data or documents is read as what it holds: a link in it to a system file or to
    another project's data would put that into the corpus unseen. ``action`` names what is being
    done with the folder (``loaded``, ``ingested``) for the message.
    """
    if not path.is_symlink():
        return None
    target = path.resolve()
    if target.is_relative_to(root.resolve()):
        return None
    file = str(Path(display_path(path.parent)) / path.name)  # the link, not what it points to
    what = "folder" if target.is_dir() else "file"
    return Problem(
        kind="outside_source", file=file,
        message=f"a symbolic link to the {what} {target}, outside the folder being {action}; it was not read.",
        fix=f"If the {what} belongs in the data, copy it into the folder (a copy, not a link); "
            "otherwise delete the link.",
    )


def display_path(path: str | Path) -> str:
    """A path as the user gave it, relative to the working directory when it is below it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)
