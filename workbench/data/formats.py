"""Data formats as registered descriptors: detection, validation and rendering, one home each.

A ``Format`` answers every question the rest of the workbench asks about a kind of data: its
canonical fields, how they are found among a table's columns, how each value is checked, and
how a row renders: as chat messages (``messages``), as the input and output text that
duplicate detection, the explorer and length filters compare (``input_output``), or as plain
text. Code elsewhere asks the descriptor (``ds.spec.has_label``, ``fmt.messages(row)``) and
never compares format names. To add a format, subclass ``Format`` and ``register_format`` an
instance, in this module or any other: loading, the explorer, token statistics, training and
comparison follow.

The shipped formats and their canonical schemas:

================== ===================================== ===========================
format             canonical columns                     typical sources
================== ===================================== ===========================
prompt_completion  prompt, completion                    question/answer, query/response
instruction        instruction, input, output            alpaca, dolly (context/response)
chat               messages: [{role, content}, ...]      OpenAI messages, ShareGPT from/value
classification     text, label                           sentence/label, utterance/intent
corpus             text                                  raw documents, one text per row
================== ===================================== ===========================

Labels follow one rule (``normalize_label``): whole numbers are one class however written (``1``,
``1.0``, ``"1"`` and ``"1.0"`` are the integer 1), booleans are the class names ``"true"`` and
``"false"`` (so are the strings ``"True"``/``"FALSE"``), and other strings are their stripped text.
The loader notes in the report how many labels it rewrote this way.

Detection looks at column names (case-insensitive aliases below). When two formats match
on different columns it refuses to guess and says how to choose (``format=`` or
``columns=``); so it does when two columns differ only in case or spaces (``text`` and
``Text ``). Extra columns are kept as metadata (a ``category`` beside prompt/completion,
an ``id``).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from ..registry import Registry
from .problems import DatasetError, Problem

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


# --------------------------------------------------------------------------- validation


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


#: Characters that show nothing: zero-width spaces and joiners, the word joiner, a byte order mark, a soft
#: hyphen, direction marks. A field of only these (and whitespace) is empty, however long it is.
INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def is_blank(text: str) -> bool:
    """Whether ``text`` shows nothing: only whitespace and ``INVISIBLE`` characters."""
    stripped = text.strip()
    # Text starting with a visible character is not blank: the common case costs no more than strip().
    return not stripped or (INVISIBLE.match(stripped) is not None and not INVISIBLE.sub("", stripped).strip())


def _blank_issue(text: str, what: str, fix: str) -> tuple[str, str, str]:
    """The ``empty_field`` issue for a blank ``text``, saying when it holds invisible characters."""
    if text.strip():
        return ("empty_field", f"{what} holds only invisible characters ({len(text)} of them: zero-width spaces, "
                               "joiners or marks), so it is empty.", fix)
    return "empty_field", f"{what} is empty.", fix


def _check_text(value, name: str) -> tuple[str | None, tuple[str, str, str] | None]:
    """Return (clean value, None) or (None, (kind, message, fix))."""
    if _is_missing(value):
        return None, ("missing_field", f"the field '{name}' is missing.",
                      f"Give every record a non-empty '{name}', or load leniently to drop such rows.")
    if not isinstance(value, str):
        return None, ("wrong_type", f"'{name}' should be text but is {_type_name(value)} ({_short(value)}).",
                      f"Write '{name}' as a string (in quotes).")
    if is_blank(value):
        return None, _blank_issue(value, f"the field '{name}'", f"Fill in '{name}' or remove the record.")
    if (issue := _surrogate_issue(value, f"the field '{name}'")):
        return None, issue
    return value, None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_issue(text: str, what: str) -> tuple[str, str, str] | None:
    """The ``encoding`` issue for text holding a lone surrogate (JSON's ``"\\ud800"``), which no file can store."""
    if text.isascii() or not (m := _SURROGATE.search(text)):
        return None
    return ("encoding", f"{what} holds the lone surrogate U+{ord(m.group()):04X} at character {m.start()} (a JSON "
                        "escape like \\ud800 without its pair): it is not a character, and writing it out fails.",
            "Fix the escape (a surrogate pair, or the character itself), or remove it.")


#: The label rule in one line, for reports (``normalize_label`` applies it).
LABEL_RULE = ("whole numbers are one class however written (1, 1.0, '1', '1.0' are 1), booleans are 'true' and "
              "'false' (True, 'TRUE'), other text is stripped and keeps its case")

_WHOLE_NUMBER = re.compile(r"^[+-]?(0|[1-9]\d*)(\.0+)?$")


def normalize_label(value) -> object:
    """A label value by the one rule every loader applies (the data report states it too).

    A label is a class name or a whole number. Whole numbers are the same class however they are
    written: ``1``, ``1.0``, ``"1"``, ``" 1 "`` and ``"1.0"`` are all the integer ``1`` (a code with
    a leading zero, ``"007"``, stays the string it is). Booleans are the class names ``"true"`` and
    ``"false"``, as JSON writes them, and so are the strings ``"True"``/``"FALSE"`` (a CSV of
    booleans): ``True`` is not the number 1. Any other string is its text without surrounding
    whitespace (case is kept: ``"Pos"`` and ``"pos"`` are two classes). Call it on values
    ``_check_label`` accepted.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value)
    text = value.strip()
    if _WHOLE_NUMBER.match(text):
        return int(text.split(".")[0])  # "1.0" -> 1, exactly, however many digits
    if text.lower() in ("true", "false"):
        return text.lower()
    return text


def _check_label(value) -> tuple[object, tuple[str, str, str] | None]:
    if _is_missing(value):
        return None, ("missing_field", "the field 'label' is missing.", "Give every record a label.")
    if isinstance(value, (bool, int, np.integer, np.bool_)):
        return normalize_label(bool(value) if isinstance(value, np.bool_) else value), None
    if isinstance(value, (float, np.floating)):
        if float(value).is_integer():
            return normalize_label(value), None
        return None, ("wrong_type", f"'label' is the non-integer number {value}.",
                      "Use a class name or an integer class id.")
    if isinstance(value, str):
        if is_blank(value):
            return None, _blank_issue(value, "the field 'label'", "Give every record a label.")
        return normalize_label(value), None
    return None, ("wrong_type", f"'label' should be a class name or id but is {_type_name(value)} ({_short(value)}).",
                  "One label per record: the workbench trains single-label classifiers (not multi-label). Keep "
                  "the main label, or join the labels into one class name.")


def _check_messages(value) -> tuple[list | None, tuple[str, str, str] | None]:
    if _is_missing(value):
        return None, ("missing_field", "the field 'messages' is missing.", "Give every record a list of messages.")
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)  # chat stored as JSON text in a CSV column
        except json.JSONDecodeError as e:
            return None, ("wrong_type", f"'messages' is text that is not a JSON list ({e.msg}).",
                          "Store messages as a JSON list of {\"role\", \"content\"} objects.")
        except RecursionError:
            return None, ("wrong_type", "'messages' is JSON nested too deeply to read (arrays inside arrays, "
                                        "hundreds of levels): not a conversation.",
                          "Store messages as a flat JSON list of {\"role\", \"content\"} objects.")
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
        if (issue := _surrogate_issue(content, f"message {i} ({canon})")):
            return None, issue
        if is_blank(content) and not (canon == "assistant" and tool_calls):
            what = "reply" if canon == "assistant" else "turn"
            return None, _blank_issue(content, f"message {i} (the {canon} {what})",
                                      "Write its text, or drop the record: an empty turn teaches the model "
                                      "to answer with nothing." if canon == "assistant" else
                                      "Write its text, or drop the record.")
        message = {"role": canon, "content": content}
        for extra in ("tool_calls", "tool_call_id", "name"):
            if msg.get(extra) is not None:
                message[extra] = msg[extra]
        out.append(message)
    if not any(m["role"] == "assistant" for m in out):
        return None, ("no_assistant_turn", "the conversation has no assistant turn, so there is nothing to learn.",
                      "Add the assistant's reply, or drop the record.")
    if not any(m["role"] == "user" for m in out):
        return None, ("no_user_turn", "the conversation has no user turn: the assistant answers nothing, so the "
                                      "model would learn to speak unprompted.",
                      "Add the user's message before the reply (a system prompt alone is not one), or drop the record.")
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




#: Fields whose values are not plain text, and their checks (every other field is checked as text).
FIELD_CHECKS = {"label": _check_label, "messages": _check_messages}



# --------------------------------------------------------------------------- descriptors


class Format:
    """What one data format is, and how its rows are found, checked and rendered.

    Subclasses set the class attributes and override what differs; ``register_format`` makes an
    instance known everywhere.

    Attributes:
        name: The name users write (``format: chat``).
        fields: Canonical fields, in the order of the canonical table.
        optional: Fields a row may leave empty (and a table may lack).
        target: What a row asks the model to produce: ``"text"`` (an answer), ``"label"`` (a
            class), or None (running text, as in a pretraining corpus).
        conversational: Rows render as chat messages (``messages``).
        detect_order: Formats are tried in this order; the order of ambiguity messages.
        claims_columns: A matched column is not offered to formats tried later (a conversation
            column is not also a prompt).
        subsumes: Formats whose match this one's covers; the richer reading wins.
        fallback: Tried only when no other format matches.
    """

    name: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    optional: ClassVar[tuple[str, ...]] = ()
    target: ClassVar[Literal["text", "label"] | None] = "text"
    conversational: ClassVar[bool] = False
    detect_order: ClassVar[int] = 50
    claims_columns: ClassVar[bool] = False
    subsumes: ClassVar[tuple[str, ...]] = ()
    fallback: ClassVar[bool] = False

    # ------------------------------------------------------------------ traits

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f not in self.optional)

    @property
    def has_label(self) -> bool:
        """Text+label data: sequence classification, stratified splits, per-class metrics."""
        return self.target == "label"

    @property
    def label_field(self) -> str | None:
        return "label" if self.has_label else None

    @property
    def generative(self) -> bool:
        """Data a causal LM learns to write (answers, or running text)."""
        return self.target != "label"

    @property
    def raw_text(self) -> bool:
        """Running text with no prompt/answer split: trained whole, cut into pieces rather than truncated."""
        return self.target is None

    @property
    def text_fields(self) -> tuple[str, ...]:
        """Fields holding plain text (token statistics measure each)."""
        return tuple(f for f in self.fields if f not in FIELD_CHECKS)

    @property
    def tabular(self) -> bool:
        """Every field is text or a label, so rows show as plain columns (a message list is not)."""
        return all(f in self.text_fields or f == self.label_field for f in self.fields)

    def __repr__(self) -> str:
        return f"<format {self.name}>"

    # ------------------------------------------------------------------ detection

    def match(self, columns: list[str], frame: pd.DataFrame | None, taken: set[str]) -> dict[str, str] | None:
        """Canonical field to source column when ``columns`` hold this format, else None.

        Required fields first, in order, then optional ones; a column serves one field, and
        columns in ``taken`` (claimed by a format tried earlier) serve none.
        """
        mapping: dict[str, str] = {}
        for canon in self.required:
            col = _find(columns, canon, taken | set(mapping.values()))
            if col is None:
                return None
            mapping[canon] = col
        return self.complete(columns, mapping)

    def complete(self, columns: list[str], mapping: dict[str, str]) -> dict[str, str]:
        """``mapping`` with the optional fields found among ``columns`` added."""
        out = dict(mapping)
        for canon in self.optional:
            if canon not in out and (col := _find(columns, canon, set(out.values()))):
                out[canon] = col
        return out

    def check(self, canon: str, value) -> tuple[object, tuple[str, str, str] | None]:
        """(clean value, None) or (None, (kind, message, fix)) for one value of field ``canon``."""
        if canon in FIELD_CHECKS:
            return FIELD_CHECKS[canon](value)
        if canon in self.optional:
            if _is_missing(value):
                return "", None
            if not isinstance(value, str):
                return None, ("wrong_type", f"'{canon}' should be text but is {_type_name(value)}.",
                              f"Write '{canon}' as a string.")
            return value, None
        return _check_text(value, canon)

    # ------------------------------------------------------------------ rendering

    def messages(self, row: dict) -> list[dict]:
        """A canonical row as chat messages (conversational formats only)."""
        raise ValueError(f"{self.name} rows are not conversations")

    def text(self, row: dict) -> str:
        """The text of a row of a format that is not conversational."""
        return row["text"]

    def input_output(self, row: dict) -> tuple[str, str]:
        """What the model sees and what it should produce, as text (output empty for running text).

        Duplicate detection, the explorer and length filters compare these; for single-turn
        formats the input is exactly the user turn training formats.
        """
        if not self.conversational:
            return self.text(row), "" if self.target is None else str(row[self.label_field or "label"])
        msgs = self.messages(row)
        return msgs[0]["content"], msgs[-1]["content"]

    def input_output_columns(self, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
        """``input_output`` of every row of a canonical table."""
        pairs = [self.input_output(r) for r in frame[list(self.fields)].to_dict("records")]
        return [a for a, _ in pairs], [b for _, b in pairs]

    def pair_row(self, prompt: str, answer: str) -> dict:
        """A canonical row holding one user turn and its answer (generated pairs, e.g. from documents)."""
        raise ValueError(f"{self.name} rows cannot be built from a prompt and an answer")

    def prompt_text(self, row: dict) -> str:
        """The text a person wrote first (the prompt column of comparison reports)."""
        return self.messages(row)[0]["content"] if self.conversational else self.text(row)


#: Every known format by name, in registration order.
FORMATS: Registry[Format] = Registry("format", lambda message, fix: DatasetError(
    Problem(kind="unknown_format", message=message, fix=fix)))


def register_format(fmt: Format) -> Format:
    """Make ``fmt`` known to the loader, the explorer, token statistics, training and comparison.

    Refuses a descriptor the rest of the workbench could not use: an answer written as text needs
    ``messages`` (``conversational``), and a label format names its fields ``text`` and ``label``
    (classification heads, the probe and per-class metrics read those).
    """
    if fmt.target == "text" and not fmt.conversational:
        raise ValueError(f"format {fmt.name!r}: rows with a text answer render as chat messages; set "
                         "conversational = True and define messages(row)")
    if fmt.has_label and not {"text", "label"} <= set(fmt.fields):
        raise ValueError(f"format {fmt.name!r}: a label format's fields are named 'text' and 'label' "
                         "(map other column names with columns= when loading)")
    return FORMATS.register(fmt)
#: The descriptor of a format by name; an unknown name says which exist.
get_format = FORMATS.lookup


class PromptCompletion(Format):
    name = "prompt_completion"
    conversational = True
    fields = ("prompt", "completion")
    detect_order = 20

    def messages(self, row: dict) -> list[dict]:
        return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]

    def pair_row(self, prompt: str, answer: str) -> dict:
        return {"prompt": prompt, "completion": answer}


class Instruction(Format):
    name = "instruction"
    conversational = True
    fields = ("instruction", "input", "output")
    optional = ("input",)
    detect_order = 10
    subsumes = ("prompt_completion",)  # an instruction table also reads as input/output pairs

    def messages(self, row: dict) -> list[dict]:
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]

    def pair_row(self, prompt: str, answer: str) -> dict:
        return {"instruction": prompt, "input": "", "output": answer}


class Chat(Format):
    name = "chat"
    conversational = True
    fields = ("messages",)
    detect_order = 0
    claims_columns = True

    def match(self, columns, frame, taken):
        mapping = super().match(columns, frame, taken)
        return mapping if mapping and _holds_lists(frame, mapping["messages"]) else None

    def messages(self, row: dict) -> list[dict]:
        return list(row["messages"])

    def prompt_text(self, row: dict) -> str:
        """The last user turn before the answer (not a system message)."""
        msgs = row["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        return next((m["content"] for m in reversed(msgs[:last]) if m["role"] == "user"), msgs[0]["content"])

    def pair_row(self, prompt: str, answer: str) -> dict:
        return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}

    def input_output(self, row: dict) -> tuple[str, str]:
        """The turns before the last answer as a transcript, and that answer."""
        msgs = row["messages"]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        return "\n".join(f"{m['role']}: {m['content']}" for m in msgs[:last]), msgs[last]["content"]


class Classification(Format):
    name = "classification"
    fields = ("text", "label")
    target = "label"
    detect_order = 30

    def input_output_columns(self, frame):
        return frame["text"].tolist(), [str(x) for x in frame["label"].tolist()]


class Corpus(Format):
    name = "corpus"
    fields = ("text",)
    target = None
    detect_order = 90
    fallback = True

    def match(self, columns, frame, taken):
        if (t := _find(columns, "text", taken)):
            return {"text": t}
        strings = [c for c in columns if not str(c).startswith("_")]
        return {"text": strings[0]} if len(strings) == 1 else None

    def input_output_columns(self, frame):
        return frame["text"].tolist(), [""] * len(frame)


for _cls in (PromptCompletion, Instruction, Chat, Classification, Corpus):
    register_format(_cls())


@dataclass(frozen=True)
class Detection:
    """The format found for a table, and which source column feeds each canonical field."""

    format: str
    columns: dict[str, str]
    candidates: tuple[str, ...] = ()


def _find(columns: list[str], canon: str, taken: set[str] = frozenset()) -> str | None:
    lowered = {c.strip().lower(): c for c in columns if c not in taken}
    for alias in ALIASES.get(canon, (canon,)):
        if alias in lowered:
            return lowered[alias]
    return None


def _clashing_columns(columns: list) -> dict[str, list]:
    """Columns that name the same field once case and surrounding spaces are ignored (``text`` and ``Text ``),
    by the field name they share; only names detection reads (``ALIASES``) count."""
    known = {a for aliases in ALIASES.values() for a in aliases} | set(ALIASES)
    groups: dict[str, list] = {}
    for c in columns:
        groups.setdefault(str(c).strip().lower(), []).append(c)
    return {k: g for k, g in groups.items() if len(g) > 1 and k in known}


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
    taken: set[str] = set()
    ordered = sorted(FORMATS.values(), key=lambda f: f.detect_order)
    for fmt in (f for f in ordered if not f.fallback):
        mapping = fmt.match(columns, frame, taken)
        if mapping is None:
            continue
        found[fmt.name] = mapping
        if fmt.claims_columns:
            taken |= set(mapping.values())
    for fmt in ordered:
        for other in fmt.subsumes:
            if fmt.name in found and other in found and set(found[other].values()) <= set(found[fmt.name].values()):
                del found[other]
    if not found:
        for fmt in (f for f in ordered if f.fallback):
            if (mapping := fmt.match(columns, frame, set())) is not None:
                found[fmt.name] = mapping
                break
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
    if (clashes := _clashing_columns(cols)):
        raise DatasetError([Problem(
            kind="duplicate_column", file=file, field=" / ".join(map(str, group)),
            message=f"the columns {' and '.join(repr(c) for c in group)} differ only in case or spaces, so it is "
                    f"not clear which one is the '{key}' field; neither was chosen.",
            fix=f"Say which with a column map: columns={{'{key}': {group[0]!r}}} (--columns {key}={group[0]}), "
                "or rename or drop the other column.",
        ) for key, group in clashes.items()])
    found = _matches(cols, frame)
    if format != "auto":
        fmt = FORMATS[format]
        if format in found:
            return Detection(format, found[format], tuple(found))
        if fmt.fallback and (mapping := fmt.match(cols, frame, set())) is not None:
            return Detection(format, mapping, tuple(found))
        needed = " and ".join(f"a {f} column" for f in fmt.required)
        raise DatasetError(Problem(
            kind="unknown_format", file=file,
            message=f"format '{format}' needs {needed}; the columns are {', '.join(map(str, cols))}.",
            fix="Name the columns with columns=, e.g. "
                + "columns={" + ", ".join(f"'{f}': '<column>'" for f in fmt.fields) + "}.",
        ))
    if len(found) == 1:
        ((name, mapping),) = found.items()
        return Detection(name, mapping, (name,))
    if not found:
        raise DatasetError(Problem(
            kind="unknown_format", file=file,
            message=f"no known format matches the columns {', '.join(map(str, cols)) or '(none)'}.",
            fix="Pass columns= to say which column is which, e.g. columns={'prompt': 'question', "
                "'completion': 'answer'} or columns={'text': 'utterance', 'label': 'intent'}; "
                f"known formats: {', '.join(FORMATS)}.",
        ))
    described = "; ".join(f"{name} ({', '.join(f'{k}={v}' for k, v in m.items())})" for name, m in found.items())
    first = next(iter(found))
    raise DatasetError(Problem(
        kind="ambiguous_format", file=file,
        message=f"the columns match more than one format: {described}.",
        fix=f"Choose one with format='{first}' (or another of {', '.join(found)}), or name the "
            "columns with columns={...}.",
    ))


def _from_columns(cols: list[str], format: str, columns: dict[str, str], file: str | None) -> Detection:
    canon_all = {f for fmt in FORMATS.values() for f in fmt.fields}
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
    options = [FORMATS[format]] if format != "auto" else list(FORMATS.values())
    for fmt in options:
        if set(fmt.required) <= keys and keys <= set(fmt.fields):
            return Detection(fmt.name, fmt.complete(cols, dict(columns)), (fmt.name,))
    raise DatasetError(Problem(
        kind="unknown_format", file=file,
        message=f"the fields named in columns= ({', '.join(sorted(keys))}) do not make up a format"
                + (f" '{format}'" if format != "auto" else "") + ".",
        fix="Name the fields of one format: " + "; ".join(f"{k}: {', '.join(v.fields)}" for k, v in FORMATS.items())
            + ".",
    ))


def canonicalize(frame: pd.DataFrame, detection: Detection) -> tuple[pd.DataFrame, list[tuple[int, str, str, str, str]]]:
    """Rename to canonical columns and validate each row.

    Returns the canonical frame (same row order; bad values left as None) and a list of
    ``(row, field, kind, message, fix)`` for every row problem.
    """
    fmt, mapping = FORMATS[detection.format], detection.columns
    issues: list[tuple[int, str, str, str, str]] = []
    out = {}
    n = len(frame)
    for canon in fmt.fields:
        source = mapping.get(canon)
        if source is None:
            out[canon] = [""] * n  # optional field absent (instruction input)
            continue
        values = frame[source].tolist()
        clean: list = [None] * n
        for i, value in enumerate(values):
            v, issue = fmt.check(canon, value)
            if issue:
                issues.append((i, canon if source == canon else f"{canon} (column '{source}')", *issue))
            clean[i] = v
        out[canon] = clean
    # Metadata columns join in one step: adding them one at a time is quadratic in the number of
    # columns (a 5,000-column file took minutes).
    used = set(mapping.values())
    canonical = pd.DataFrame(out, index=frame.index, dtype=object)
    meta = [col for col in frame.columns if col not in used and col not in out]
    if not meta:
        return canonical, issues
    return pd.concat([canonical, frame[meta].astype(object)], axis=1), issues


def relabelled(raw: pd.DataFrame, canonical: pd.DataFrame, detection: Detection) -> str | None:
    """A note of the labels ``normalize_label`` rewrote (``'1.0' -> 1 (3 rows)``), or None when none changed.

    A label is rewritten when its type or text changes: ``"1"`` becoming the integer 1 counts, so a
    reader of the report sees every value that is not what the file wrote.
    """
    field_ = FORMATS[detection.format].label_field
    source = detection.columns.get(field_) if field_ else None
    if source is None or source not in raw.columns:
        return None
    changes: dict[tuple[str, str], int] = {}
    for before, after in zip(raw[source].tolist(), canonical[field_].tolist()):
        if after is None or (type(before) is type(after) and before == after):
            continue
        if isinstance(before, (int, np.integer)) and not isinstance(before, (bool, np.bool_)) and before == after:
            continue  # a numpy integer is the same number
        key = (repr(_short(before, 20)) if isinstance(before, str) else repr(before), repr(after))
        changes[key] = changes.get(key, 0) + 1
    if not changes:
        return None
    top = sorted(changes.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{a} -> {b} ({n})" for (a, b), n in top[:5])
    return (f"{sum(changes.values())} label(s) rewritten by the label rule ({LABEL_RULE}): {shown}"
            + (", ..." if len(top) > 5 else ""))

