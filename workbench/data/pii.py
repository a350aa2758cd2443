"""Personal data and secrets: find them, count them, redact them.

Kinds, in the order they claim overlapping text:

- ``url_credentials``: ``scheme://user:password@host``
- ``private_key``: PEM private key blocks
- ``api_key``: well-known token shapes (AWS ``AKIA…``, GitHub ``ghp_…``, Slack ``xox?-…``,
  ``sk-…``/``sk_live_…``, Google ``AIza…``, JWTs)
- ``password``: a secret written after ``password:``, ``pwd =``, ``api key is`` … (the value
  must look like a secret: a digit or symbol in it, so "my password is expired" is not one)
- ``email``
- ``iban``: checked with the ISO 13616 mod-97 rule
- ``credit_card``: 13-19 digits with a card-network prefix and a valid Luhn checksum
- ``ip_address``: IPv4 and IPv6, checked with ``ipaddress``
- ``phone``: international (+CC), bracketed area codes, or grouped national numbers of
  9-15 digits

Validation keeps false positives down (order numbers fail Luhn, version numbers fail
IPv4 ranges). Reports never show a found value in full: examples are masked, so a report
can go into a notebook output or a run folder without leaking what it found.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from .dataset import LoadedDataset

Validator = Callable[[str], bool]


def luhn_ok(number: str) -> bool:
    """The Luhn checksum of the digits in ``number``."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return bool(digits) and total % 10 == 0


_CARD_PREFIX = re.compile(r"^(4|5[1-5]|2[2-7]|3[47]|3[0689]|6011|65|64[4-9]|62|35)")


def _card_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


def iban_ok(text: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    s = re.sub(r"\s", "", text).upper()
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return int(digits) % 97 == 1


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _phone_ok(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    if not 9 <= len(digits) <= 15:
        return False
    if text.startswith("+") or "(" in text:
        return True
    groups = re.split(r"[\s.-]+", text.strip())
    # national formats: 07700 900123, 020 7946 0018, 512-555-0147 (groups, leading 0 or US 3-3-4)
    return len(groups) >= 2 and (digits.startswith("0") or [len(g) for g in groups] == [3, 3, 4])


def _secret_ok(value: str) -> bool:
    # A secret has a digit or an inner symbol; "expired", "blocked?" and "reset." are words.
    core = value.rstrip(".,;:!?)")
    return len(core) >= 6 and (any(c.isdigit() for c in core) or any(not c.isalnum() for c in core))


@dataclass(frozen=True)
class _Kind:
    name: str
    pattern: re.Pattern
    validate: Validator | None = None
    group: int = 0  # which group is the sensitive value
    tag: str = ""


KINDS: tuple[_Kind, ...] = (
    _Kind("url_credentials", re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://([^\s/:@]+:[^\s/@]+)@[^\s/]+"), group=1,
          tag="[CREDENTIALS]"),
    _Kind("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
          tag="[PRIVATE_KEY]"),
    _Kind("api_key", re.compile(
        r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}"
        r"|sk[-_](?:live[-_]|test[-_]|proj[-_])?[A-Za-z0-9_-]{16,}|[pr]k_(?:live|test)_[A-Za-z0-9]{16,}"
        r"|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"), tag="[API_KEY]"),
    _Kind("password", re.compile(
        r"(?i)\b(?:password|passwd|pwd|passcode|api[ _-]?key|secret|token|access[ _-]?key)\b"
        r"(?:\s+(?:is|was|=|:)|\s*[:=])\s*[\"'`]?([^\s\"'`,;]+?)[\"'`.,;]?(?=\s|$)"),
          validate=_secret_ok, group=1, tag="[PASSWORD]"),
    _Kind("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), tag="[EMAIL]"),
    _Kind("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), validate=iban_ok, tag="[IBAN]"),
    _Kind("credit_card", re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"), validate=_card_ok,
          tag="[CARD_NUMBER]"),
    _Kind("ip_address", re.compile(
        r"(?<![\w.])(?:(?:\d{1,3}\.){3}\d{1,3}|(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4})(?![\w.:])"),
          validate=_ip_ok, tag="[IP_ADDRESS]"),
    _Kind("phone", re.compile(
        r"(?<![\w+.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{1,5}(?:[\s.-]\d{2,8}){1,4}(?!\w|\.\d)"
        r"|(?<![\w+])\+\d{9,15}(?!\w)"), validate=_phone_ok, tag="[PHONE]"),
)
KIND_NAMES = tuple(k.name for k in KINDS)


@dataclass(frozen=True)
class PiiFinding:
    """One piece of personal data: where it is, what kind, and a masked preview."""

    kind: str
    row: int
    field: str
    start: int
    end: int
    masked: str


def mask(value: str, kind: str) -> str:
    """Show enough of ``value`` to recognise its shape, never the value itself."""
    if kind in ("password", "url_credentials", "private_key"):
        return "*" * min(len(value), 8)
    if kind == "api_key":
        return value[:4] + "…" + "*" * 4
    if len(value) <= 6:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def find_pii(text: str, kinds: tuple[str, ...] | None = None,
             allow: tuple[str, ...] = ()) -> list[tuple[str, int, int]]:
    """Spans ``(kind, start, end)`` of personal data in ``text``, non-overlapping, in text order.

    ``allow`` lists values that are not personal (an organisation's role mailboxes such as
    ``security@example.com``); they are compared case-insensitively.
    """
    if not text:
        return []
    allowed = {a.casefold() for a in allow}
    taken: list[tuple[int, int]] = []
    found: list[tuple[str, int, int]] = []
    for kind in KINDS:
        if kinds is not None and kind.name not in kinds:
            continue
        for m in kind.pattern.finditer(text):
            start, end = m.span(kind.group)
            if start < 0:
                continue
            value = text[start:end]
            if kind.validate and not kind.validate(value):
                continue
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            if value.casefold() in allowed:
                continue
            found.append((kind.name, start, end))
    found.sort(key=lambda x: x[1])
    return found


def redact_text(text: str, kinds: tuple[str, ...] | None = None,
                allow: tuple[str, ...] = ()) -> tuple[str, list[tuple[str, int, int]]]:
    """``text`` with each finding replaced by its tag (``[EMAIL]``, ``[PHONE]``, ...)."""
    spans = find_pii(text, kinds, allow)
    tags = {k.name: k.tag for k in KINDS}
    out, pos = [], 0
    for kind, start, end in spans:
        out.append(text[pos:start])
        out.append(tags[kind])
        pos = end
    out.append(text[pos:])
    return "".join(out), spans


def _text_fields(ds: LoadedDataset) -> list[str]:
    return [f for f in ds.fields if f != "label"]


@dataclass(frozen=True)
class PiiReport:
    """Counts by kind, rows affected, and every finding (masked)."""

    findings: tuple[PiiFinding, ...]
    rows_scanned: int

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(f.kind for f in self.findings)
        return {k: c[k] for k in KIND_NAMES if c[k]}

    @property
    def rows(self) -> list[int]:
        return sorted({f.row for f in self.findings})

    def examples(self, per_kind: int = 3) -> dict[str, list[PiiFinding]]:
        out: dict[str, list[PiiFinding]] = {}
        for f in self.findings:
            bucket = out.setdefault(f.kind, [])
            if len(bucket) < per_kind:
                bucket.append(f)
        return out


def _iter_texts(ds: LoadedDataset):
    for fld in _text_fields(ds):
        for row, value in enumerate(ds.frame[fld].tolist()):
            if fld == "messages":
                for j, m in enumerate(value):
                    yield row, f"messages[{j}].content", m["content"]
            elif isinstance(value, str):
                yield row, fld, value


_MAYBE = re.compile(r"[\d@]|://|-----BEGIN|(?i:pass|pwd|key|secret|token|pin)")


def scan_pii(ds: LoadedDataset, kinds: tuple[str, ...] | None = None, allow: tuple[str, ...] = ()) -> PiiReport:
    """Find personal data in every text field of ``ds`` (``allow``: values that are not personal)."""
    findings = []
    for row, fld, text in _iter_texts(ds):
        if not _MAYBE.search(text):  # cheap pre-check: every kind needs one of these
            continue
        for kind, start, end in find_pii(text, kinds, allow):
            findings.append(PiiFinding(kind, row, fld, start, end, mask(text[start:end], kind)))
    return PiiReport(tuple(findings), len(ds))


def redact_pii(ds: LoadedDataset, kinds: tuple[str, ...] | None = None,
               allow: tuple[str, ...] = ()) -> tuple[LoadedDataset, PiiReport]:
    """Replace personal data in every text field with tags; returns the new dataset and what was found."""
    report = scan_pii(ds, kinds, allow)
    if not report.findings:
        return ds, report
    frame = ds.frame.copy()
    touched = {f.row for f in report.findings}
    for fld in _text_fields(ds):
        values = frame[fld].tolist()
        for row in touched:
            v = values[row]
            if fld == "messages":
                values[row] = [{**m, "content": redact_text(m["content"], kinds, allow)[0]} for m in v]
            elif isinstance(v, str):
                values[row] = redact_text(v, kinds, allow)[0]
        frame[fld] = values
    return ds.with_frame(frame), report
