"""Task formats: detect which one a table holds, map it to the canonical schema, validate rows.

Canonical schemas (one per task):

================== ===================================== ===========================
format             canonical columns                     typical sources
================== ===================================== ===========================
prompt_completion  prompt, completion                    question/answer, query/response
instruction        instruction, input, output            alpaca, dolly (context/response)
chat               messages: [{role, content}, ...]      OpenAI messages, ShareGPT from/value
classification     text, label                           sentence/label, utterance/intent
corpus             text                                  raw documents, one text per row
================== ===================================== ===========================

Detection looks at column names (case-insensitive aliases below). When two formats match
on different columns it refuses to guess and says how to choose (``format=`` or
``columns=``). Extra columns are kept as metadata (a ``category`` beside prompt/completion,
an ``id``).
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass

import pandas as pd

from .problems import DatasetError, Problem

FORMATS: dict[str, tuple[str, ...]] = {
    "prompt_completion": ("prompt", "completion"),
    "instruction": ("instruction", "input", "output"),
    "chat": ("messages",),
    "classification": ("text", "label"),
    "corpus": ("text",),
}
#: Canonical fields a row may leave empty.
OPTIONAL = {("instruction", "input")}

#: Column names recognised for each canonical field, in order of preference.
ALIASES: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "question", "query", "input", "source", "request", "dialogue", "document", "article"),
    "completion": ("completion", "response", "answer", "output", "target", "reply", "summary", "highlights"),
    "instruction": ("instruction", "instructions"),
    "input": ("input", "context"),
    "output": ("output", "response", "answer", "completion"),
    "messages": ("messages", "conversations", "conversation", "dialogue", "dialog", "chat", "turns"),
    "text": ("text", "sentence", "utterance", "content", "document", "review", "body", "message", "comment"),
    "label": ("label", "labels", "category", "intent", "class", "sentiment", "topic", "tag", "tags"),
}

ROLE_ALIASES = {
    "system": "system", "developer": "system",
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "chatgpt": "assistant", "ai": "assistant", "function_call": "assistant",
    "tool": "tool", "function": "tool", "ipython": "tool", "observation": "tool",
}
ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Detection:
    """The format found for a table, and which source column feeds each canonical field."""

    format: str
    columns: dict[str, str]
    candidates: tuple[str, ...] = ()


def _find(columns: list[str], canon: str, taken: set[str] = frozenset()) -> str | None:
    lowered = {c.strip().lower(): c for c in columns if c not in taken}
    for alias in ALIASES[canon]:
        if alias in lowered:
            return lowered[alias]
    return None


def _holds_lists(frame: pd.DataFrame | None, column: str) -> bool:
    """Whether a column holds conversations (lists, or JSON lists stored as text), not plain text."""
    if frame is None:
        return True
    for value in frame[column].head(20):
        if _is_missing(value):
            continue
        if isinstance(value, str):
            return value.lstrip().startswith("[")
        return isinstance(value, (list, tuple)) or hasattr(value, "tolist")
    return False


def _matches(columns: list[str], frame: pd.DataFrame | None = None) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    if (m := _find(columns, "messages")) and _holds_lists(frame, m):
        found["chat"] = {"messages": m}
    if (i := _find(columns, "instruction")) and (o := _find(columns, "output", {i})):
        mapping = {"instruction": i, "output": o}
        if (inp := _find(columns, "input", {i, o})):
            mapping["input"] = inp
        found["instruction"] = mapping
    chat_col = found.get("chat", {}).get("messages")
    taken = {chat_col} if chat_col else set()
    if (p := _find(columns, "prompt", taken)) and (c := _find(columns, "completion", taken | {p})):
        found["prompt_completion"] = {"prompt": p, "completion": c}
    if (t := _find(columns, "text")) and (lab := _find(columns, "label", {t})):
        found["classification"] = {"text": t, "label": lab}
    # An instruction table also reads as input/output pairs; the richer reading wins.
    if "instruction" in found and "prompt_completion" in found:
        if set(found["prompt_completion"].values()) <= set(found["instruction"].values()) | {found["instruction"]["instruction"]}:
            del found["prompt_completion"]
    if not found:
        if (t := _find(columns, "text")):
            found["corpus"] = {"text": t}
        else:
            strings = [c for c in columns if not c.startswith("_")]
            if len(strings) == 1:
                found["corpus"] = {"text": strings[0]}
    return found


def detect_format(frame: pd.DataFrame, format: str = "auto", columns: dict[str, str] | None = None,
                  file: str | None = None) -> Detection:
    """Decide the task format of ``frame`` and the column feeding each canonical field.

    Args:
        frame: The raw table.
        format: ``"auto"`` or one of ``FORMATS``.
        columns: Canonical field to source column, overriding detection,
            e.g. ``{"text": "utterance", "label": "intent"}``.
        file: For messages.

    Raises:
        DatasetError: ambiguous or unknown format, or a named column that does not exist.
    """
    cols = [c for c in frame.columns if c not in ("_file", "_line")]
    if format != "auto" and format not in FORMATS:
        raise DatasetError(Problem(
            kind="unknown_format", file=file,
            message=f"unknown format {format!r}.",
            fix=f"Use 'auto' or one of: {', '.join(FORMATS)}.",
        ))
    if columns:
        return _from_columns(cols, format, columns, file)
    found = _matches(cols, frame)
    if format != "auto":
        if format in found:
            return Detection(format, found[format], tuple(found))
        if format == "corpus" and (t := _find(cols, "text")):
            return Detection("corpus", {"text": t}, tuple(found))
        needed = " and ".join(f"a {f} column" for f in FORMATS[format] if (format, f) not in OPTIONAL)
        raise DatasetError(Problem(
            kind="unknown_format", file=file,
            message=f"format '{format}' needs {needed}; the columns are {', '.join(map(str, cols))}.",
            fix="Name the columns with columns=, e.g. "
                + "columns={" + ", ".join(f"'{f}': '<column>'" for f in FORMATS[format]) + "}.",
        ))
    if len(found) == 1:
        ((fmt, mapping),) = found.items()
        return Detection(fmt, mapping, (fmt,))
    if not found:
        raise DatasetError(Problem(
            kind="unknown_format", file=file,
            message=f"no known format matches the columns {', '.join(map(str, cols)) or '(none)'}.",
            fix="Pass columns= to say which column is which, e.g. columns={'prompt': 'question', "
                "'completion': 'answer'} or columns={'text': 'utterance', 'label': 'intent'}; "
                f"known formats: {', '.join(FORMATS)}.",
        ))
    described = "; ".join(f"{fmt} ({', '.join(f'{k}={v}' for k, v in m.items())})" for fmt, m in found.items())
    first = next(iter(found))
    raise DatasetError(Problem(
        kind="ambiguous_format", file=file,
        message=f"the columns match more than one format: {described}.",
        fix=f"Choose one with format='{first}' (or another of {', '.join(found)}), or name the "
            "columns with columns={...}.",
    ))


def _from_columns(cols: list[str], format: str, columns: dict[str, str], file: str | None) -> Detection:
    canon_all = {f for fields in FORMATS.values() for f in fields}
    problems = []
    for canon, source in columns.items():
        if canon not in canon_all:
            close = difflib.get_close_matches(canon, sorted(canon_all), n=1)
            problems.append(Problem(
                kind="unknown_column", file=file, field=canon,
                message=f"'{canon}' is not a canonical field.",
                fix=(f"Did you mean '{close[0]}'? " if close else "") + f"Canonical fields: {', '.join(sorted(canon_all))}.",
            ))
        elif source not in cols:
            close = difflib.get_close_matches(str(source), [str(c) for c in cols], n=1)
            problems.append(Problem(
                kind="unknown_column", file=file, field=source,
                message=f"columns= maps '{canon}' to '{source}', but there is no such column.",
                fix=(f"Did you mean '{close[0]}'? " if close else "") + f"Columns: {', '.join(map(str, cols))}.",
            ))
    if problems:
        raise DatasetError(problems)
    keys = set(columns)
    options = [format] if format != "auto" else list(FORMATS)
    for fmt in options:
        required = {f for f in FORMATS[fmt] if (fmt, f) not in OPTIONAL}
        if required <= keys and keys <= set(FORMATS[fmt]):
            mapping = dict(columns)
            if fmt == "instruction" and "input" not in mapping and (inp := _find(cols, "input", set(mapping.values()))):
                mapping["input"] = inp
            return Detection(fmt, mapping, (fmt,))
    raise DatasetError(Problem(
        kind="unknown_format", file=file,
        message=f"the fields named in columns= ({', '.join(sorted(keys))}) do not make up a format"
                + (f" '{format}'" if format != "auto" else "") + ".",
        fix="Name the fields of one format: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in FORMATS.items()) + ".",
    ))


# --------------------------------------------------------------------------- validation


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _check_text(value, name: str) -> tuple[str | None, tuple[str, str, str] | None]:
    """Return (clean value, None) or (None, (kind, message, fix))."""
    if _is_missing(value):
        return None, ("missing_field", f"the field '{name}' is missing.",
                      f"Give every record a non-empty '{name}', or load leniently to drop such rows.")
    if not isinstance(value, str):
        return None, ("wrong_type", f"'{name}' should be text but is {_type_name(value)} ({_short(value)}).",
                      f"Write '{name}' as a string (in quotes).")
    if not value.strip():
        return None, ("empty_field", f"the field '{name}' is empty.",
                      f"Fill in '{name}' or remove the record.")
    return value, None


def _check_label(value) -> tuple[object, tuple[str, str, str] | None]:
    if _is_missing(value):
        return None, ("missing_field", "the field 'label' is missing.", "Give every record a label.")
    if isinstance(value, bool) or isinstance(value, int):
        return value, None
    if isinstance(value, float):
        if value.is_integer():
            return int(value), None
        return None, ("wrong_type", f"'label' is the non-integer number {value}.",
                      "Use a class name or an integer class id.")
    if isinstance(value, str):
        if not value.strip():
            return None, ("empty_field", "the field 'label' is empty.", "Give every record a label.")
        return value.strip(), None
    return None, ("wrong_type", f"'label' should be a class name or id but is {_type_name(value)} ({_short(value)}).",
                  "One label per record; for several labels per text, make one record per label.")


def _check_messages(value) -> tuple[list | None, tuple[str, str, str] | None]:
    if _is_missing(value):
        return None, ("missing_field", "the field 'messages' is missing.", "Give every record a list of messages.")
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)  # chat stored as JSON text in a CSV column
        except json.JSONDecodeError as e:
            return None, ("wrong_type", f"'messages' is text that is not a JSON list ({e.msg}).",
                          "Store messages as a JSON list of {\"role\", \"content\"} objects.")
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if not isinstance(value, list):
        return None, ("wrong_type", f"'messages' should be a list of messages but is {_type_name(value)}.",
                      "Write messages as [{\"role\": \"user\", \"content\": ...}, {\"role\": \"assistant\", ...}].")
    if not value:
        return None, ("empty_field", "the conversation has no messages.", "Remove the record or add its turns.")
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            return None, ("wrong_type", f"message {i} is {_type_name(msg)}, not an object with role and content.",
                          "Write each message as {\"role\": ..., \"content\": ...}.")
        role = msg.get("role", msg.get("from"))
        content = msg.get("content", msg.get("value"))
        if _is_missing(role):
            return None, ("missing_field", f"message {i} has no 'role' (or 'from').",
                          "Give every message a role: system, user, assistant or tool.")
        canon = ROLE_ALIASES.get(str(role).strip().lower())
        if canon is None:
            return None, ("unknown_role", f"message {i} has the unknown role '{role}'.",
                          f"Use one of {', '.join(ROLES)} (human/gpt from ShareGPT are understood too).")
        if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        tool_calls = msg.get("tool_calls")
        if canon == "assistant" and _is_missing(content) and tool_calls:
            content = ""  # an assistant turn that only calls tools (OpenAI fine-tuning files)
        if _is_missing(content) or (canon != "assistant" and content == ""):
            return None, ("missing_field", f"message {i} ({canon}) has no 'content'.",
                          "Give every message its text in 'content' (or 'value').")
        if not isinstance(content, str):
            return None, ("wrong_type", f"message {i} content is {_type_name(content)}, not text.",
                          "Write message content as a string.")
        message = {"role": canon, "content": content}
        for extra in ("tool_calls", "tool_call_id", "name"):
            if msg.get(extra) is not None:
                message[extra] = msg[extra]
        out.append(message)
    if not any(m["role"] == "assistant" for m in out):
        return None, ("no_assistant_turn", "the conversation has no assistant turn, so there is nothing to learn.",
                      "Add the assistant's reply, or drop the record.")
    return out, None


def _type_name(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _short(value, n: int = 40) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= n else text[: n - 3] + "..."


def canonicalize(frame: pd.DataFrame, detection: Detection) -> tuple[pd.DataFrame, list[tuple[int, str, str, str, str]]]:
    """Rename to canonical columns and validate each row.

    Returns the canonical frame (same row order; bad values left as None) and a list of
    ``(row, field, kind, message, fix)`` for every row problem.
    """
    fmt, mapping = detection.format, detection.columns
    issues: list[tuple[int, str, str, str, str]] = []
    out = {}
    n = len(frame)
    for canon in FORMATS[fmt]:
        source = mapping.get(canon)
        if source is None:
            out[canon] = [""] * n  # optional field absent (instruction input)
            continue
        values = frame[source].tolist()
        clean: list = [None] * n
        for i, value in enumerate(values):
            if canon == "label":
                v, issue = _check_label(value)
            elif canon == "messages":
                v, issue = _check_messages(value)
            elif (fmt, canon) in OPTIONAL:
                v, issue = ("" if _is_missing(value) else value), None
                if not isinstance(v, str):
                    v, issue = None, ("wrong_type", f"'{canon}' should be text but is {_type_name(value)}.",
                                      f"Write '{canon}' as a string.")
            else:
                v, issue = _check_text(value, canon)
            if issue:
                issues.append((i, canon if source == canon else f"{canon} (column '{source}')", *issue))
            clean[i] = v
        out[canon] = clean
    canonical = pd.DataFrame(out, index=frame.index, dtype=object)
    used = set(mapping.values())
    for col in frame.columns:
        if col not in used and col not in canonical.columns:
            canonical[col] = frame[col]
    return canonical, issues
