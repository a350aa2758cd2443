"""What a file's bytes are, and how to decode text documents whose charset nobody declared.

``sniff`` names the content from its first bytes (so a PDF saved as ``.docx`` is read as a
PDF, with a warning). ``choose_encoding`` follows the order a browser uses for HTML:
byte-order mark, then a declaration (``<meta charset>``, ``http-equiv``, an XML
declaration), then "is it valid UTF-8?", and only then a statistical guess by
charset-normalizer. It always says which of these decided, so an ingest report can tell
the user what was assumed.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

#: Magic numbers of formats worth naming when a file is not what its suffix says.
_MAGIC = (
    (b"%PDF-", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty ZIP archive
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),  # Office 97-2003, and password-protected OOXML
    (b"\x89PNG\r\n\x1a\n", "png image"),
    (b"\xff\xd8\xff", "jpeg image"),
    (b"GIF8", "gif image"),
    (b"\x1f\x8b", "gzip archive"),
    (b"{\\rtf", "rtf"),
)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_HTML_START = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html[\s>])", re.I | re.S)
_META_CHARSET = re.compile(rb"<meta[^>]+?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:\-]+)", re.I)
_XML_DECL = re.compile(rb"^<\?xml[^>]+encoding\s*=\s*[\"']([A-Za-z0-9_.:\-]+)", re.I)
# The WHATWG Encoding Standard decodes these labels as windows-1252, and so do browsers:
# pages declared latin-1 routinely hold curly quotes from 0x80-0x9F.
_AS_CP1252 = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "ascii", "us-ascii", "cp819", "iso_8859-1"}


def sniff(head: bytes) -> str:
    """Name the content of a file from its first bytes.

    Returns:
        ``pdf``, ``zip``, ``ole``, ``rtf``, ``png image`` (and other named binaries),
        ``html``, ``binary`` (NUL or control bytes, no known magic) or ``text``.
    """
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if b"%PDF-" in head[:1024]:  # PDF readers accept junk before the header
        return "pdf"
    for bom, _ in _BOMS:
        if head.startswith(bom):
            return "html" if _HTML_START.match(_ascii_view(head, bom)) else "text"
    if _HTML_START.match(head):
        return "html"
    sample = head[:4096]
    if b"\x00" in sample:
        return "binary"
    controls = sum(1 for b in sample if b < 9 or 13 < b < 32)
    return "binary" if sample and controls / len(sample) > 0.1 else "text"


_DESCRIPTIONS = {"pdf": "a PDF", "html": "an HTML page", "zip": "a ZIP package (such as .docx)",
                 "ole": "an Office 97-2003 file", "text": "plain text", "binary": "binary data", "rtf": "RTF",
                 "png image": "a PNG image", "jpeg image": "a JPEG image", "gif image": "a GIF image",
                 "gzip archive": "a gzip archive"}


def describe(kind: str) -> str:
    """A ``sniff`` result in words, for messages ("a PDF", "plain text")."""
    return _DESCRIPTIONS.get(kind, kind)


def _ascii_view(head: bytes, bom: bytes) -> bytes:
    """The start of a UTF-16/32 file as ASCII bytes, for pattern checks."""
    try:
        return head[len(bom):].decode(dict(_BOMS)[bom], errors="ignore").encode("ascii", errors="ignore")
    except LookupError:
        return b""


@dataclass(frozen=True)
class EncodingChoice:
    """The codec to read a text document with, and why.

    Attributes:
        codec: A Python codec name (``utf-8``, ``cp1252``, ``utf-16``...).
        how: ``given`` (encoding=), ``bom``, ``declared``, ``utf-8`` (valid UTF-8, nothing
            declared) or ``guessed``.
        note: A sentence for the per-file result.
        warning: Set when the user should check the result (a guess, a broken declaration).
    """

    codec: str
    how: str
    note: str
    warning: str | None = None


def _codec(label: str) -> str | None:
    label = label.strip().lower()
    if label in _AS_CP1252:
        return "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def declared_charset(head: bytes) -> str | None:
    """The charset an HTML or XML document declares in its first 4 KB, as written."""
    m = _XML_DECL.match(head) or _META_CHARSET.search(head[:4096])
    return m.group(1).decode("ascii", errors="replace") if m else None


def _valid(raw: bytes, codec: str, final: bool) -> bool:
    try:
        codecs.getincrementaldecoder(codec)().decode(raw, final=final)
        return True
    except UnicodeDecodeError:
        return False


def choose_encoding(head: bytes, *, html: bool, given: str | None = None, complete: bool = True) -> EncodingChoice:
    """Decide how to decode a text document from its bytes (all of them, or its start).

    Args:
        head: The file's bytes, or its first block for a file read in a stream.
        html: Look for ``<meta charset>`` / XML declarations, and report undeclared
            encodings (for HTML the charset is meant to be declared; for Markdown and text,
            UTF-8 is simply assumed when the bytes are valid UTF-8).
        given: An encoding the caller named, which wins.
        complete: False when ``head`` is only the start of the file (a multi-byte character
            may be cut at its end).
    """
    if given:
        codec = _codec(given)
        if codec is None:
            raise ValueError(f"unknown encoding {given!r}; use a Python codec name such as 'utf-8' or 'cp1252'.")
        return EncodingChoice(codec, "given", f"read as {codec} (encoding= was given)")
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return EncodingChoice(codec, "bom", f"read as {codec.replace('-sig', '')} (byte-order mark)")
    problem = None
    if html and (label := declared_charset(head)):
        codec = _codec(label)
        if codec is None:
            problem = f"it declares the charset '{label}', which is not a known encoding"
        elif _valid(head, codec, complete):
            shown = codec if codec == label.lower() else f"{codec} (declared as '{label}')"
            return EncodingChoice(codec, "declared", f"read as {shown}, declared in the document")
        else:
            problem = f"it declares '{label}' but its bytes are not valid {codec}"
    if _valid(head, "utf-8", complete):
        if problem:
            return EncodingChoice("utf-8", "utf-8", f"read as utf-8: {problem}, and the bytes are valid UTF-8",
                                  warning=f"{problem}; the bytes are valid UTF-8, so they were read as UTF-8.")
        note = ("no charset declared (no byte-order mark, no <meta charset>); the bytes are valid UTF-8, "
                "so UTF-8 was assumed") if html else "read as utf-8"
        return EncodingChoice("utf-8", "utf-8", note)
    if _mostly_utf8(head):
        # UTF-8 with a few stray bytes: decoding it all as a legacy code page would garble
        # every accented letter, so keep UTF-8; the reader reports where the bad bytes are.
        return EncodingChoice("utf-8", "utf-8", "read as utf-8 (it holds UTF-8 text and a few invalid bytes)")
    codec = _guess(head)
    why = problem or ("no charset is declared (no byte-order mark, no <meta charset>)" if html
                      else "the bytes are not valid UTF-8")
    if html and not problem:
        why += " and the bytes are not UTF-8"
    return EncodingChoice(codec, "guessed", f"read as {codec} (a guess: {why})",
                          warning=f"{why}; read as {codec}, a guess by charset-normalizer.")


def _mostly_utf8(raw: bytes) -> bool:
    """True when ``raw`` holds valid multi-byte UTF-8 and no more invalid sequences than valid ones."""
    text = raw.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 127) - bad
    return good > 0 and bad <= good


def _guess(raw: bytes) -> str:
    from charset_normalizer import from_bytes

    matches = from_bytes(raw[:200_000])
    best = matches.best()
    if best is None:
        # windows-1252 decodes all but five byte values: the least surprising fallback for Western text.
        return "cp1252"
    # On short texts several single-byte code pages score exactly alike (cp1250 and cp1252
    # for French, say). Among equals, prefer windows-1252, the WHATWG fallback for Western
    # locales, then the ISO Latin sets, over the first one charset-normalizer happened to list.
    tied = [name for m in matches if m.chaos <= best.chaos and m.coherence >= best.coherence
            for name in [m.encoding, *m.could_be_from_charset]]
    tied = [c for c in (_codec(n) for n in tied) if c]
    for preferred in ("cp1252", "iso8859-15", "iso8859-1"):
        if preferred in tied:
            return preferred
    return _codec(best.encoding) or "cp1252"


def decode(raw: bytes, choice: EncodingChoice) -> tuple[str, int | None]:
    """Decode with ``choice``; undecodable bytes become U+FFFD.

    Returns:
        The text, and the byte offset of the first undecodable byte (None when all decoded).
    """
    try:
        return raw.decode(choice.codec), None
    except UnicodeDecodeError as e:
        return raw.decode(choice.codec, errors="replace"), e.start
