"""Personal data and secrets: find them, score them, count them, redact them.

Kinds, in the order they claim overlapping text:

- ``url_credentials``: ``scheme://user:password@host``
- ``private_key``: PEM private key blocks
- ``api_key``: vendor token shapes (AWS ``AKIA…``, GitHub ``ghp_…``/``github_pat_…``, Slack
  ``xox?-…``, OpenAI/Stripe ``sk-…``/``sk_live_…``, Google ``AIza…``, SendGrid ``SG.…``, Mailgun
  ``key-…``, GitLab ``glpat-…``, npm ``npm_…``, Hugging Face ``hf_…``, JWTs), Azure
  ``AccountKey=…``, and ``Authorization: Bearer …`` values
- ``password``: a secret after ``password``, ``pwd``, ``passcode``, ``secret``, ``token``,
  ``PIN`` … (also ``Passwort``, ``mot de passe``, ``contraseña``, ``wachtwoord``), with up to six
  words between keyword and value ("temporary password for the VPN: …"), ``user / pass`` pairs;
  placeholders (``[REDACTED]``, ``********``, ``<password>``) and plain words are not secrets
- ``email``: including fullwidth/ideographic dots and accented (internationalised) domains
- ``iban``: checked with the ISO 13616 mod-97 rule
- ``credit_card``: 12-19 digits with a card-network prefix (Visa, Mastercard, Amex, Discover,
  Maestro, UnionPay, JCB, Diners) and a valid Luhn checksum, in groups separated by spaces,
  non-breaking spaces, dashes, dots or slashes
- ``ip_address``: IPv4 and IPv6, checked with ``ipaddress`` (a full stop or ``:port`` after one
  is not part of it)
- ``phone``: numbers checked against Google's numbering plans (the ``phonenumbers`` package),
  written with ``+CC``, ``00CC``, ``1-``, brackets, spaces, dots, dashes, en-dashes, slashes or
  underscores, or unbroken; a national number is read in ``region`` first, then in the regions
  of ``FALLBACK_REGIONS``

Optional kinds (``OPTIONAL_KINDS``, not scanned unless asked for): ``person`` (names, found by
spaCy's English NER model, in ``pii_ner``: the ``ner`` extra) and ``street_address`` (street,
house number and postcode shapes of the US, UK, DE, FR, NL, ES, IT, IN, found by pattern).

Every finding has a confidence in [0, 1]: validation sets it (a number valid in the default
region scores above one valid only elsewhere), and the words just before it move it: "call",
"phone", "card", "password", "server" raise it, "order", "reference", "invoice", "ISBN",
"version", "build" lower it below the default ``MIN_CONFIDENCE``. Reports never show a found
value in full: examples are masked, so a report can go into a notebook output or a run folder
without leaking what it found.

Redaction (``ACTIONS``): ``tags`` replaces a value with its tag (``[EMAIL]``); ``pseudonyms``
with a made-up value of the same kind and shape, the same for the same value in every row (keyed
by ``WORKBENCH_PII_SALT`` when set, else by a random key made once per machine: ``default_salt``);
``drop`` removes the rows that hold any.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import phonenumbers

from .dataset import LoadedDataset
from .pii_ner import find_names

#: Findings below this confidence are not reported or redacted unless a lower minimum is asked for.
MIN_CONFIDENCE = 0.5
#: Where a national number (no ``+CC``) is looked up when it is not valid in the default region.
FALLBACK_REGIONS = ("GB", "DE", "FR", "NL", "ES", "IT", "IN", "BE", "CH", "AT", "IE", "CA", "AU")
#: What redaction does with a finding.
ACTIONS = ("tags", "pseudonyms", "drop")

# Unicode variants of the characters the patterns look for, mapped one to one so offsets hold.
_FOLD = str.maketrans({
    "\uff0e": ".", "\u3002": ".", "\uff61": ".", "\ufe52": ".", "\uff20": "@", "\ufe6b": "@",
    "\u00a0": " ", "\u202f": " ", "\u2007": " ", "\u2009": " ", "\u2002": " ", "\u2003": " ", "\u3000": " ",
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-", "\uff0d": "-",
    "\uff0f": "/", "\uff1a": ":", **{chr(0xFF10 + i): str(i) for i in range(10)},
})


def fold(text: str) -> str:
    """``text`` with fullwidth/ideographic dots, odd spaces and dashes as their ASCII forms (same length)."""
    return text.translate(_FOLD)


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


def iban_ok(text: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    s = re.sub(r"\s", "", text).upper()
    if not 15 <= len(s) <= 34 or not s.isalnum():
        return False
    rearranged = s[4:] + s[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged)
    return int(digits) % 97 == 1


# --------------------------------------------------------------------------- context words

_BEFORE = 40  # characters of context looked at before a candidate

_NEGATIVE = re.compile(
    r"(?i)\b(?:order|orders|ref|reference|referenz|invoice|inv|rechnung|bestell\w*|commande|facture|pedido|factura"
    r"|ordine|fattura|bestelling|factuur|tracking|shipment|case|ticket|po|id|serial|serien\w*|sn|account\s+(?:no|number)"
    r"|customer\s+(?:id|no|number)|isbn(?:-1[03])?|version|ver|v|build|release|firmware|patch|kb|sku|model|part"
    r"|number\s+of)\b\W*(?:(?:no|nr|n°|number|#)\W*)?$")
_PHONE_WORDS = re.compile(
    r"(?i)(?:call|phone|tel|mobile|mob|cell|fax|ring|reach|sms|text\s+me|whatsapp|contact|number|num[eé]ro|nummer"
    r"|handy|telefon|t[eé]l[eé]fono|portable|cellulare|móvil|movil|desk|landline|hotline|dial)")
_CARD_WORDS = re.compile(r"(?i)(?:card|visa|master|amex|maestro|discover|kreditkarte|karte|carte|tarjeta|carta|cc|pan)")
_UPGRADE_WORDS = re.compile(r"(?i)\b(?:upgrad|updat|downgrad|patch|bump|releas|install|roll(?:ed)?\s+(?:out|back))\w*")
_IP_WORDS = re.compile(r"(?i)\b(?:ip|host|server|address|addr|ping|client|gateway|dns|router|proxy|connect|ssh|subnet"
                       r"|allow|block|firewall|from|node|vpn|lan|wan|endpoint|source|origin)")


def _window(text: str, start: int, size: int = _BEFORE) -> str:
    return text[max(0, start - size):start]


_SENTENCE_END = re.compile(r"[.!?;]\s+(?=[A-Z])|\n")  # "Invoice no. 123" goes on; "Done. Order 123" starts anew
_ANY_BREAK = re.compile(r"[.!?;]\s|\n")


def _clause(text: str, start: int, breaks: re.Pattern = _SENTENCE_END, size: int = 30) -> str:
    """The text before ``start`` back to the last sentence break or line, at most ``size`` characters."""
    before = _window(text, start, size)
    cuts = [m.end() for m in breaks.finditer(before)]
    return before[cuts[-1]:] if cuts else before


_CODE_TOKENS = re.compile(r"(?:\b(?=[A-Z]*\d)[A-Z0-9]+[ \t]+)+$")  # "1Z 999 AA1 " of a tracking number


def _negative_context(text: str, start: int) -> bool:
    clause = _clause(text, start)
    if _NEGATIVE.search(clause.rstrip(" :#.-\t")):
        return True
    codes = _CODE_TOKENS.search(clause)  # "tracking 1Z 999 AA1 0123 4567 84": the number goes on a code
    return bool(codes and re.search(r"[A-Z]", codes.group(0))
                and _NEGATIVE.search(clause[:codes.start()].rstrip(" :#.-\t")))


# --------------------------------------------------------------------------- finders: (start, end, confidence)

Found = Iterator[tuple[int, int, float]]
#: ``skip(start, end, best)``: whether a candidate cannot be reported (overlaps a finding, or ``best`` is too low).
Skip = Callable[[int, int, float], bool]


@dataclass(frozen=True)
class _Kind:
    name: str
    find: Callable[[str, str, str, Skip], Found]  # (folded text, original text, region, skip)
    tag: str
    optional: bool = False
    #: Substrings one of which the folded, lower-cased text must hold for ``find`` to run (a cheap first look:
    #: most texts of a large dataset have no password keyword, no key prefix, no digit); empty: always run.
    hints: tuple[str, ...] = ()


def _regex_finder(pattern: re.Pattern, confidence: float) -> Callable:
    """A finder yielding each match of ``pattern`` (its group ``v`` when it has one) at ``confidence``."""
    def find(text: str, original: str, region: str, skip: Skip) -> Found:
        for m in pattern.finditer(text):
            group = "v" if "v" in pattern.groupindex and m.group("v") is not None else 0
            yield (*m.span(group), confidence)
    return find


_URL_CREDENTIALS = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://(?P<v>[^\s/:@]*:[^\s/@]+)@[^\s/]+")
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)")
_API_KEY = re.compile(
    r"(?<![\w-])(?:A(?:KIA|SIA)[0-9A-Z]{16}|SK[0-9a-f]{32}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|sk[-_](?:live[-_]|test[-_]|proj[-_])?[A-Za-z0-9_-]{16,}|[pr]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}|key-[0-9A-Za-z]{32}|glpat-[A-Za-z0-9_-]{20,}|npm_[A-Za-z0-9]{36}"
    r"|hf_[A-Za-z0-9]{30,}|https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,})(?![\w-])"
    # SECRET_ACCESS_KEY=..., DB_PASSWORD: ..., auth token <hex>: names that say the value is a secret
    r"|\b[A-Z][A-Z0-9]*_(?:[A-Z0-9]+_)*(?:SECRET|TOKEN|PASSWORD|PASSWD|KEY)(?:_[A-Z0-9]+)*[ \t]*[=:][ \t]*[\"']?"
    r"(?P<e>[^\s\"',;]{12,}?)[\"']?(?=[\s,;]|\.(?:\s|$)|$)"
    r"|(?i:auth(?:entication)?[ _-]?token)[ \t]*[:=]?[ \t]*(?P<h>[0-9a-f]{32,})\b"
    r"|(?i:AccountKey|SharedAccessKey)=(?P<v>[A-Za-z0-9+/]{30,}={0,2})"
    r"|(?i:Authorization:\s*Bearer|Bearer)\s+(?P<b>[A-Za-z0-9._~+/-]{16,}=*)")


def _find_api_keys(text: str, original: str, region: str, skip: Skip) -> Found:
    for m in _API_KEY.finditer(text):
        if _filler(m.group(0)):
            continue  # sk_live_xxxxxxxxxxxxxxxx: a template, not a key
        for g in ("v", "b", "e", "h"):
            if m.group(g) is not None:
                if g == "e" and (_secret_score(m.group(g), False) < 0.5 or _TEMPLATE.search(m.group(g))):
                    break  # DEBUG_TOKEN=enabled, API_KEY=YOUR_API_KEY_HERE: not a secret
                yield (*m.span(g), 0.9)
                break
        else:
            yield (*m.span(), 0.95)


def _filler(value: str) -> bool:
    """A key written as a template: its random part one repeated letter (``sk_live_xxxxxxxx``)."""
    tail = re.split(r"[=:_.-]", value)[-1]
    return len(tail) >= 8 and len(set(tail.lower())) <= 2


#: A value saying where a secret goes: YOUR_API_KEY_HERE, <token>, insert-key.
_TEMPLATE = re.compile(r"(?i)^(?:your|my|insert|enter|put|replace|add)[_-]|[_-]here$|^<.*>$|^x{4,}")


_PW_KEYWORD = (r"(?:passwor[dt]|passwd|pwd|pw|pass(?:code|phrase|wort)?|kennwort|mot\s+de\s+passe|mdp|contrase[ñn]a"
               r"|clave|wachtwoord|has[łl]o|l[öo]senord(?:et)?|senha|adgangskode|salasana|secret|token|api[ _-]?key|access[ _-]?key|cred(?:ential)?s?|pin(?:\s*code)?|code\s+pin|パスワード"
               r"|(?:wi-?fi|wlan)[ \t]+(?:code|key)|(?:code|cl[ée])[ \t]+(?:wi-?fi|wlan))")
_PASSWORD = re.compile(
    r"(?i)\b(?P<k>" + _PW_KEYWORD + r")(?:\b|(?<=ド))"
    r"(?P<w>(?:[ \t]+(?!(?:is|was|est|es|è|é|är|ist|lautet|=)\b)[^\s:=.!?;,/]{1,20}){0,6}?)"
    r"(?:[ \t]*(?:[:=](?!//)|(?:is(?:[ \t]+now)?|was|est|es|è|é|är|ist|lautet|are|(?<=has[łl]o )to)\b|(?<=ド)は)[ \t]*[:=]?|[ \t]*\([^)\n]{1,30}\)[ \t]*[:=]"
    r"|(?<=pass)[ \t]+(?=\S*[\d\W])|(?<=pw)[ \t]+(?=\S*[\d\W])|(?:(?<=pin)|(?<=pin code)|(?<=pincode)|(?<=passcode))[ \t]+(?=\d))[ \t]*"
    r"[\"'`]?(?P<v>[^\s\"'`,;]+?)[\"'`]?[.,;)]?(?=\s|$)")
_PAIR = re.compile(  # user / pass admin / S3cret!, credentials: admin/S3cret!, login admin pass S3cret!
    r"(?i)\b(?:user(?:name)?\s*/\s*pass(?:word)?|login\s*/\s*pass(?:word)?|credentials?)\s*[:=]?\s*"
    r"[^\s/]{1,40}\s*/\s*(?P<v>[^\s\"'`,;]+?)[.,;)]?(?=\s|$)")
_NEW_ONE = re.compile(r"(?i)\b(?:temporary|new|initial|one-time|fresh|reset)\b[^\n:=.]{0,25}?(?:[:=]|\bis\b)[ \t]*"
                      r"[\"'`]?(?P<v>[^\s\"'`,;]+?)[\"'`]?[.,;)]?(?=\s|$)")
_PLACEHOLDER = re.compile(r"(?i)^(?:[*•·x#._-]+|\[.*\]?|<.*>?|\(.*\)?|\{.*\}?|redacted|hidden|masked|none|null|n/?a"
                          r"|changeme|password|secret|example|tbd|xxx+)$")


def _secret_score(value: str, pin_keyword: bool) -> float:
    core = value.rstrip(".,;:!?)")
    if _PLACEHOLDER.match(core) or _TEMPLATE.search(core) or len(set(core)) <= 2 or core.startswith("//") \
            or "://" in core:
        return 0.0
    if core.isdigit():
        return 0.85 if pin_keyword and 4 <= len(core) <= 8 else (0.6 if len(core) >= 6 else 0.0)
    if len(core) < 6:
        return 0.0
    if any(c.isdigit() for c in core) or any(not c.isalnum() for c in core):
        return 0.9
    if len(core) >= 8 and any(c.isupper() for c in core[1:]) and any(c.islower() for c in core):
        return 0.7  # mixed case inside: LHzTNqcdCQEk
    if len(core) >= 16 and core.isalpha():
        return 0.6  # a passphrase run together: correcthorsebatterystaple (few words are 16 letters long)
    return 0.0  # a plain word: "expired", "blocked"


def _find_passwords(text: str, original: str, region: str, skip: Skip) -> Found:
    for m in _NEW_ONE.finditer(text):  # "I forgot my password" - "I have set a temporary one: X"
        if re.search(r"(?i)pass|pwd|\bpin\b|login|credential|sign.?in", _window(text, m.start(), 80)):
            score = _secret_score(m.group("v"), False)
            if score:
                yield (*m.span("v"), score - 0.1)
    for m in _PAIR.finditer(text):
        score = _secret_score(m.group("v"), False)
        if score:
            yield (*m.span("v"), score)
    for m in _PASSWORD.finditer(text):
        keyword = m.group("k").lower()
        pin = keyword.startswith(("pin", "code")) or keyword == "passcode"
        if keyword == "pass" and re.search(r"(?i)\b(?:user(?:name)?|login)\s*/\s*$", _window(text, m.start(), 20)):
            continue  # "user / pass = admin / S3cret": the pair pattern takes it
        if keyword == "pass" and not m.group(0)[len(keyword):].lstrip().startswith((":", "=")) \
                and not re.search(r"(?i)\b(?:user|login)\b", _window(text, m.start(), 30)):
            continue  # "pass" alone only in a login/user pair or as "pass: ..."
        score = _secret_score(m.group("v"), pin)
        if m.group("w") and len(m.group("w").split()) > 3:
            score -= 0.1
        if score >= 0.3:
            yield (*m.span("v"), score)


_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*\.(?!(?i:png|jpe?g|gif|svg|webp|ico|bmp|tiff?|css|js|ts|map|pdf|zip)\b)[^\W\d_]{2,}(?![\w-])")


def _find_emails(text: str, original: str, region: str, skip: Skip) -> Found:
    for m in _EMAIL.finditer(text):
        yield m.start(), m.end(), 0.95


_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")


def _find_ibans(text: str, original: str, region: str, skip: Skip) -> Found:
    for m in _IBAN.finditer(text):
        value = m.group(0)
        # a trailing group can belong to the next word: try shorter endings
        while value and not iban_ok(value):
            cut = value.rfind(" ")
            if cut < 15:
                value = ""
                break
            value = value[:cut]
        if value:
            yield m.start(), m.start() + len(value), 0.95


# Card networks: Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37, Diners 30/36/38/39, Discover 6011/64/65,
# Maestro 50/56-69, UnionPay 62/81, JCB 35, RuPay 60/65/81/82.
_CARD_PREFIX = re.compile(r"^(?:4|5[0-9]|2[2-7]|3[47]|3[0689]|35|6\d|8[12])")
def _card_length_ok(digits: str) -> bool:
    """Lengths each network issues: Visa 13/16/19, Amex 15, Mastercard 16, Maestro 12-19, others 14-19."""
    n = len(digits)
    if digits[0] == "4":
        return n in (13, 16, 19)
    if digits[:2] in ("34", "37"):
        return n == 15
    if "51" <= digits[:2] <= "55" or "22" <= digits[:2] <= "27":
        return n == 16
    if digits[:2] in ("50", "56", "57", "58") or digits[:2] in ("63", "67") or digits[:4] in ("6759", "6761", "6763"):
        return 12 <= n <= 19
    return 14 <= n <= 19


_CARD = re.compile(r"(?<![\d.,/+-])\d(?:[ ./-]?\d){11,18}(?![\d]|[.,/-]\d)")


def _find_cards(text: str, original: str, region: str, skip: Skip) -> Found:
    for m in _CARD.finditer(text):
        value = m.group(0)
        seps = set(re.sub(r"\d", "", value))
        digits = re.sub(r"\D", "", value)
        if len(seps) > 1 or not (_CARD_PREFIX.match(digits) and _card_length_ok(digits) and luhn_ok(digits)):
            continue
        score = 0.9 if seps else 0.8
        if _CARD_WORDS.search(_window(text, m.start())):
            score += 0.09
        if _negative_context(text, m.start()):
            score -= 0.5
        yield m.start(), m.end(), score


_IPV4 = re.compile(r"(?<![\w.:-])(?:\d{1,3}\.){3}\d{1,3}(?![\w-]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)(?![\w:])")


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _find_ips(text: str, original: str, region: str, skip: Skip) -> Found:
    for m in _IPV4.finditer(text):
        value = m.group(0)
        if not _ip_ok(value):
            continue
        score = 0.9
        clause = _clause(text, m.start(), _ANY_BREAK, _BEFORE)
        if int(value.split(".")[0]) < 10 and (not _IP_WORDS.search(clause) or _UPGRADE_WORDS.search(clause)):
            score = 0.45  # 5.4.5.229: a version string as often as an address ("upgraded the server to 5.4.5.229")
        if _negative_context(text, m.start()):
            score -= 0.5
        yield m.start(), m.end(), score
    for m in _IPV6.finditer(text):
        value = m.group(0)
        if sum(c.isalnum() for c in value) >= 4 and ":" in value.strip(":") and _ip_ok(value):
            yield m.start(), m.end(), 0.9


# A run of digit groups: +CC, 00CC, (area), 1-, separated by one space, dot, dash, slash or underscore.
_PHONE = re.compile(r"(?<![\w+@/.:-])(?:\+|\(\+?(?=\d))?\d(?:\d|\)?(?:[ ./_-]| / )?\(?(?=\d)|\)(?= ?\d))*")
_DATE = re.compile(r"^(?:\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}[./-]\d{1,2}[./-]\d{1,2})(?:[ T]\d|$)")


def _isbn13(digits: str) -> bool:
    return len(digits) == 13 and digits[:3] in ("978", "979") and \
        sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(digits)) % 10 == 0


def _grouping_penalty(value: str, num) -> float:
    """0.2 when ``value`` is grouped unlike its country writes it (475-722-1942 as 47-5722-1942), else 0."""
    groups = [len(g) for g in re.findall(r"\d+", value)]
    if len(groups) < 3:  # two groups (area / number) are written many ways
        return 0.0
    for fmt in (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL):
        expected = [len(g) for g in re.findall(r"\d+", phonenumbers.format_number(num, fmt))]
        if groups[-2:] == expected[-2:] or groups[-1] == expected[-1]:
            return 0.0
    return 0.2


@lru_cache(maxsize=65536)
def _phone_score(value: str, region: str) -> float:
    """How surely ``value`` (a whole candidate) is a phone number, by numbering plan; 0 if it is none."""
    digits = re.sub(r"\D", "", value)
    if not 7 <= len(digits) <= 15 or _DATE.match(value) or _isbn13(digits):
        return 0.0
    international = value.startswith(("+", "(+", "00"))
    candidates = [region] if international else [region, *[r for r in FALLBACK_REGIONS if r != region]]
    for i, reg in enumerate(candidates):
        try:
            num = phonenumbers.parse(("+" + value[2:] if value.startswith("00") else value).replace("_", "-"), reg)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            if international:
                return 0.95
            if i == 0:
                return 0.85 - _grouping_penalty(value, num)
            if digits.startswith("0") or reg in ("ES", "IT", "IN"):
                return 0.65 - _grouping_penalty(value, num)
            continue
        if (international or digits.startswith("0")) and phonenumbers.is_possible_number(num) and re.search(r"\D", value):
            return 0.5  # the right length but an unassigned range (0770 0900xxx, drama numbers)
    return 0.0


def _find_phones(text: str, original: str, region: str, skip: Skip) -> Found:
    for m in _PHONE.finditer(text):
        after = text[m.end():m.end() + 2]
        if after[:1].isalnum() or (after[:1] in "-_" and after[1:].isalpha()):
            continue  # part of a word, a UUID or a code: 85649026-6aa4-...
        value = m.group(0).rstrip("(")
        if value.count("(") != value.count(")"):
            value = value.lstrip("(") if value.startswith("(") and value.count("(") > value.count(")") else value
            value = value.rstrip(")") if value.count(")") > value.count("(") else value
        start = m.start() + m.group(0).find(value)
        if sum(c.isdigit() for c in value) < 7:
            continue
        negative = _negative_context(text, m.start())
        if skip(start, start + len(value), 0.99 - 0.6 * negative):
            continue  # no numbering-plan look-up for a run already taken (a card, an IP) or doomed by its context
        best = _best_phone(value, region)
        if best is None:
            continue
        s, e, score = best
        s, e = start + s, start + e
        if not re.search(r"[\s./_()-]", text[s:e]) and not text[s:e].startswith("+"):
            score -= 0.15  # unbroken digits are as often an ID
        if negative:
            score -= 0.6  # the context of the whole run: "Reference 5037 0240 5189" is no phone
        elif _PHONE_WORDS.search(_window(text, s)):
            score += 0.3
        yield s, e, min(score, 0.99)


def _best_phone(value: str, region: str) -> tuple[int, int, float] | None:
    """The whole of ``value`` if it is a number, else the longest run of its groups that is one."""
    score = _phone_score(value, region)
    if score:
        return 0, len(value), score
    cuts = [0] + [m.end() for m in re.finditer(" ", value)] + [len(value) + 1]  # numbers next to other numbers
    if len(cuts) > 8:
        return None
    spans = sorted(((cuts[i], cuts[j] - 1) for i in range(len(cuts)) for j in range(i + 1, len(cuts))
                    if (i, j) != (0, len(cuts) - 1)), key=lambda se: se[0] - se[1])
    for s, e in spans:
        part = value[s:e]
        if sum(c.isdigit() for c in part) < 7:
            continue
        score = _phone_score(part, region)
        if score:
            return s, e, score
    return None


# Street addresses: "221 Baker Street", "Hauptstraße 12", "12 rue de la Paix", "Via Roma 10", "Calle Mayor 5",
# followed by an optional ", postcode city".
_STREET_WORDS = (r"(?i:street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|terrace"
                 r"|close|crescent|square|sq|parkway|highway|salai|marg|nagar)")
_POSTCODE_CITY = r"(?:,?\s+(?:[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}|\d{4}\s?[A-Z]{2}|\d{5,6}|[A-Z]{2}\s+\d{5}|[A-Z][\w-]+)" \
                 r"(?:[ ,]+(?:[A-Z]{2}\s+\d{5}|\d{4,6}|[A-Z]{1,2}\d[A-Z\d]?(?:\s*\d[A-Z]{2})?|\d[A-Z]{2}|[A-Z][\w-]+)){0,3})?"
_STREET = re.compile(
    r"\b\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][\w'-]+\s+){1,3}" + _STREET_WORDS + r"\b\.?" + _POSTCODE_CITY
    + r"|\b\d{1,5}[a-z]?,?\s+(?:rue|avenue|boulevard|place|chemin|allée|impasse|quai)\s+(?:[\w'-]+\s+){0,4}[\w'-]+"
    + _POSTCODE_CITY
    + r"|\b(?i:via|viale|corso|piazza|calle|avenida|paseo|plaza|carrer|rua)\s+(?:[\w'-]+\s+){0,4}?\d{1,4}[a-z]?\b"
    + _POSTCODE_CITY
    + r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|allee|gasse|platz|ring|damm|gracht|laan|plein|kade|dijk)"
      r"\s+\d{1,4}[a-z]?\b" + _POSTCODE_CITY
    + r"|\b(?:[A-ZÄÖÜ][\wäöü-]+\s+)(?:Straße|Strasse|Weg|Allee|Platz)\s+\d{1,4}[a-z]?\b" + _POSTCODE_CITY)


def _find_streets(text: str, original: str, region: str, skip: Skip) -> Found:
    for m in _STREET.finditer(original):
        yield m.start(), m.start() + len(m.group(0).rstrip(" ,")), 0.7


def _find_persons(text: str, original: str, region: str, skip: Skip) -> Found:
    for s, e in find_names(original):
        yield s, e, 0.8


_DIGITS = tuple("0123456789")
KINDS: tuple[_Kind, ...] = (
    _Kind("url_credentials", _regex_finder(_URL_CREDENTIALS, 0.95), "[CREDENTIALS]", hints=("://",)),
    _Kind("private_key", _regex_finder(_PRIVATE_KEY, 0.99), "[PRIVATE_KEY]", hints=("-----begin",)),
    _Kind("api_key", _find_api_keys, "[API_KEY]", hints=(
        "akia", "asia", "sk", "gh", "xox", "pk_", "rk_", "aiza", "eyj", "sg.", "key", "glpat-", "npm_", "hf_",
        "hooks.slack", "secret", "token", "passw", "bearer", "auth")),
    _Kind("password", _find_passwords, "[PASSWORD]", hints=(
        "pass", "pw", "pwd", "kennwort", "mot de", "mdp", "contrase", "clave", "wachtwoord", "hasło", "haslo",
        "senord", "senha", "adgangskode", "salasana", "secret", "token", "key", "cred", "pin", "code", "wi-fi",
        "wifi", "wlan", "パスワード", "user", "login", "sign")),
    _Kind("email", _find_emails, "[EMAIL]", hints=("@",)),
    _Kind("iban", _find_ibans, "[IBAN]", hints=_DIGITS),
    _Kind("credit_card", _find_cards, "[CARD_NUMBER]", hints=_DIGITS),
    _Kind("ip_address", _find_ips, "[IP_ADDRESS]", hints=_DIGITS + (":",)),
    _Kind("phone", _find_phones, "[PHONE]", hints=_DIGITS),
    _Kind("street_address", _find_streets, "[ADDRESS]", optional=True),
    _Kind("person", _find_persons, "[NAME]", optional=True),
)
KIND_NAMES = tuple(k.name for k in KINDS)
#: The kinds scanned by default: everything found by pattern and numbering plan.
DEFAULT_KINDS = tuple(k.name for k in KINDS if not k.optional)
#: Kinds scanned only when asked for (``ner=True``): names need the ``ner`` extra (spaCy).
OPTIONAL_KINDS = tuple(k.name for k in KINDS if k.optional)
TAGS = {k.name: k.tag for k in KINDS}


def kinds_for(ner: bool = False) -> tuple[str, ...]:
    """The kinds a scan covers: the default ones, and with ``ner`` names and street addresses too."""
    return KIND_NAMES if ner else DEFAULT_KINDS


def describe_kinds(kinds: tuple[str, ...]) -> str:
    """A sentence saying which kinds were scanned for, and which were not (names, addresses)."""
    missing = [k for k in KIND_NAMES if k not in kinds]
    text = "scanned for " + ", ".join(k for k in KIND_NAMES if k in kinds)
    if missing:
        text += "; NOT scanned for " + ", ".join(missing) + (" (set pii_ner, with the `ner` extra installed)"
                                                             if set(missing) & set(OPTIONAL_KINDS) else "")
    return text


@dataclass(frozen=True)
class Detection:
    """One span of personal data in one text, with how sure the scan is (0-1)."""

    kind: str
    start: int
    end: int
    confidence: float


def detect_pii(text: str, kinds: tuple[str, ...] | None = None, allow: tuple[str, ...] = (), *,
               region: str = "US", min_confidence: float = MIN_CONFIDENCE) -> list[Detection]:
    """Personal data in ``text``: non-overlapping detections in text order, at ``min_confidence`` or above.

    ``kinds`` limits the kinds (default ``DEFAULT_KINDS``); ``allow`` lists values that are not
    personal (an organisation's role mailboxes such as ``security@example.com``), compared
    case-insensitively; ``region`` is where national phone numbers are read first (ISO 3166
    code such as ``US``, ``GB``, ``DE``).
    """
    if not text:
        return []
    kinds = DEFAULT_KINDS if kinds is None else kinds
    region = "GB" if region.upper() == "UK" else region.upper()
    folded = fold(text)
    allowed = {fold(a).casefold() for a in allow}
    taken: list[tuple[int, int]] = []
    found: list[Detection] = []
    low = folded.lower()
    for kind in KINDS:
        if kind.name not in kinds or (kind.hints and not any(h in low for h in kind.hints)):
            continue
        def skip(start: int, end: int, best: float) -> bool:
            return best < min_confidence or any(start < e and s < end for s, e in taken)

        for start, end, confidence in kind.find(folded, text, region, skip):
            if confidence < min_confidence or any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            if folded[start:end].casefold() in allowed:
                continue
            found.append(Detection(kind.name, start, end, round(min(confidence, 1.0), 2)))
    found.sort(key=lambda d: d.start)
    return found


def find_pii(text: str, kinds: tuple[str, ...] | None = None, allow: tuple[str, ...] = (), *,
             region: str = "US", min_confidence: float = MIN_CONFIDENCE) -> list[tuple[str, int, int]]:
    """Spans ``(kind, start, end)`` of personal data in ``text`` (``detect_pii`` without confidences)."""
    return [(d.kind, d.start, d.end) for d in detect_pii(text, kinds, allow, region=region,
                                                         min_confidence=min_confidence)]


# --------------------------------------------------------------------------- pseudonyms

#: Where the machine's own pseudonym key lives when ``WORKBENCH_PII_SALT`` is not set.
SALT_FILE = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "workbench" / "pii_salt"


@lru_cache(maxsize=1)
def default_salt() -> str:
    """The key of pseudonyms: ``WORKBENCH_PII_SALT``, else a random key kept in ``SALT_FILE`` (made once).

    Never written to a run folder: with it, pseudonyms of short values (phone numbers) could be
    reversed by trying every value. The same key on a machine gives every process (each step of
    an experiment) the same pseudonyms, and so the same splits.
    """
    env = os.environ.get("WORKBENCH_PII_SALT")
    if env:
        return env
    try:
        return SALT_FILE.read_text().strip()
    except FileNotFoundError:
        SALT_FILE.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(16)
        try:
            fd = os.open(SALT_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return SALT_FILE.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key
_FAKE_FIRST = ("Alex", "Sam", "Robin", "Jordan", "Taylor", "Casey", "Morgan", "Jamie", "Riley", "Avery", "Quinn", "Drew")
_FAKE_LAST = ("Example", "Sample", "Placeholder", "Doe", "Roe", "Moe", "Lane", "Field", "Stone", "Brook", "Hill", "Wood")


def _h(kind: str, value: str, salt: str) -> bytes:
    return hmac.new(salt.encode(), f"{kind}\0{fold(value).casefold()}".encode(), hashlib.sha256).digest()


def _digits_from(h: bytes, n: int) -> str:
    out, x = [], int.from_bytes(h, "big")
    for _ in range(n):
        x, d = divmod(x, 10)
        out.append(str(d))
    return "".join(out)


def pseudonym(kind: str, value: str, salt: str | None = None) -> str:
    """A made-up value of ``kind`` for ``value``: the same for the same value and salt, shaped like it.

    Emails become ``name.xxxx@example.com``; phones keep their country code, separators and
    length; cards and IBANs keep their layout (and stay valid by Luhn or mod-97, so a model still
    sees what one looks like); addresses of IPv4 become ``10.x.y.z``; secrets become random
    strings of their length; names become a first and last name from a fixed list.
    """
    h = _h(kind, value, default_salt() if salt is None else salt)
    if kind == "email":
        return f"{_FAKE_FIRST[h[0] % len(_FAKE_FIRST)].lower()}.{h[1:4].hex()}@example.com"
    if kind == "person":
        return f"{_FAKE_FIRST[h[0] % len(_FAKE_FIRST)]} {_FAKE_LAST[h[1] % len(_FAKE_LAST)]}"
    if kind == "ip_address":
        if ":" in value:
            return "2001:db8::" + ":".join(h[i:i + 2].hex().lstrip("0") or "0" for i in (0, 2, 4))
        return f"10.{h[0]}.{h[1]}.{h[2] % 254 + 1}"
    if kind in ("phone", "credit_card", "iban"):
        keep = 0
        if kind == "phone" and value.startswith("+"):
            keep = len(re.match(r"\+\d{1,3}", value).group(0))
        elif kind == "iban":
            keep = 2
        elif kind == "credit_card":
            keep = 1
        n_digits = sum(c.isdigit() for c in value[keep:])
        fresh = iter(_digits_from(h, n_digits))
        chars = list(value[:keep]) + [next(fresh) if c.isdigit() else c for c in value[keep:]]
        if kind == "credit_card":
            positions = [i for i, c in enumerate(chars) if c.isdigit()]
            body = "".join(chars[i] for i in positions[:-1])
            chars[positions[-1]] = luhn_check_digit(body)
        if kind == "iban":
            compact = [i for i, c in enumerate(chars) if not c.isspace()]
            text = "".join(chars[i] for i in compact)
            check = 98 - int("".join(str(int(c, 36)) for c in text[4:] + text[:2] + "00")) % 97
            chars[compact[2]], chars[compact[3]] = f"{check:02d}"
        return "".join(chars)
    if kind == "street_address":
        return f"{h[0] % 200 + 1} Example Street, Springfield"
    if kind == "private_key":
        return TAGS[kind]
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    stream = hashlib.sha256(h).digest() + hashlib.sha256(h + b"1").digest()
    fake = "".join(alphabet[b % len(alphabet)] for b in stream)[:max(len(value), 8)]
    if kind == "url_credentials" and ":" in value:
        return f"user{h[0]}:{fake[:len(value.split(':', 1)[1])]}"
    return fake[:len(value)]


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body`` + it pass the Luhn check (card numbers made up for tests and pseudonyms)."""
    return str((10 - _luhn_sum(body + "0") % 10) % 10)


def _luhn_sum(number: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total


def _replace(text: str, detections: list[Detection], action: str, salt: str | None) -> str:
    out, pos = [], 0
    for d in detections:
        out.append(text[pos:d.start])
        out.append(pseudonym(d.kind, text[d.start:d.end], salt) if action == "pseudonyms" else TAGS[d.kind])
        pos = d.end
    out.append(text[pos:])
    return "".join(out)


def redact_text(text: str, kinds: tuple[str, ...] | None = None, allow: tuple[str, ...] = (), *,
                action: str = "tags", region: str = "US", min_confidence: float = MIN_CONFIDENCE,
                salt: str | None = None) -> tuple[str, list[tuple[str, int, int]]]:
    """``text`` with each finding replaced by its tag (``[EMAIL]``, ``[PHONE]``, ...) or, with
    ``action="pseudonyms"``, by its ``pseudonym``; and the spans found (in the original text)."""
    if action not in ("tags", "pseudonyms"):
        raise ValueError(f"redact_text replaces values: action must be 'tags' or 'pseudonyms', got {action!r}")
    found = detect_pii(text, kinds, allow, region=region, min_confidence=min_confidence)
    return _replace(text, found, action, salt), [(d.kind, d.start, d.end) for d in found]


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class PiiFinding:
    """One piece of personal data: where it is, what kind, how sure, and a masked preview."""

    kind: str
    row: int
    field: str
    start: int
    end: int
    masked: str
    confidence: float = 1.0


def mask(value: str, kind: str) -> str:
    """Show enough of ``value`` to recognise its shape, never the value itself."""
    if kind in ("password", "url_credentials", "private_key"):
        return "*" * min(len(value), 8)
    if kind == "api_key":
        return value[:4] + "…" + "*" * 4
    if kind == "person":
        return " ".join(w[:1] + "*" * (len(w) - 1) for w in value.split())
    if len(value) <= 6:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def _text_fields(ds: LoadedDataset) -> list[str]:
    return [f for f in ds.fields if f != "label"]


@dataclass(frozen=True)
class PiiReport:
    """Counts by kind, rows affected, every finding (masked), and what the scan covered."""

    findings: tuple[PiiFinding, ...]
    rows_scanned: int
    kinds: tuple[str, ...] = DEFAULT_KINDS
    min_confidence: float = MIN_CONFIDENCE
    region: str = "US"

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(f.kind for f in self.findings)
        return {k: c[k] for k in KIND_NAMES if c[k]}

    @property
    def rows(self) -> list[int]:
        return sorted({f.row for f in self.findings})

    @property
    def scanned(self) -> str:
        """Which kinds were scanned for and which not, at which confidence: for reports."""
        return f"{describe_kinds(self.kinds)}; confidence >= {self.min_confidence:g}, phones read as {self.region}"

    def above(self, min_confidence: float) -> "PiiReport":
        """The findings at ``min_confidence`` or above."""
        return PiiReport(tuple(f for f in self.findings if f.confidence >= min_confidence), self.rows_scanned,
                         self.kinds, max(min_confidence, self.min_confidence), self.region)

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


# Every default kind needs a digit, an at sign, or one of these words (a cheap pre-check before the patterns).
_MAYBE = re.compile(r"[\d@\uff20\uff10-\uff19]")
_MAYBE_WORDS = ("pass", "pwd", "key", "secret", "token", "pin", "bearer", "://", "-----begin", "mot de", "contrase",
                "kennwort", "wachtwoord", "clave", "mdp", "credential", "code", "pw", "sg.", "glpat-", "npm_", "hf_",
                "akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "sk-", "sk_", "rk_", "pk_", "aiza",
                "eyj")


def _maybe(text: str) -> bool:
    if _MAYBE.search(text):
        return True
    low = text.lower()
    return any(w in low for w in _MAYBE_WORDS)


def scan_pii(ds: LoadedDataset, kinds: tuple[str, ...] | None = None, allow: tuple[str, ...] = (), *,
             region: str = "US", min_confidence: float = MIN_CONFIDENCE) -> PiiReport:
    """Find personal data in every text field of ``ds`` (``allow``: values that are not personal).

    ``kinds`` defaults to ``DEFAULT_KINDS`` (``kinds_for(ner=True)`` adds names and addresses);
    ``min_confidence`` drops findings the scan is less sure of; ``region`` reads national phones.
    """
    kinds = DEFAULT_KINDS if kinds is None else tuple(kinds)
    unknown = [k for k in kinds if k not in KIND_NAMES]
    if unknown:
        raise ValueError(f"unknown personal-data kinds {unknown}; known: {', '.join(KIND_NAMES)}")
    optional = bool(set(kinds) & set(OPTIONAL_KINDS))
    findings = []
    for row, fld, text in _iter_texts(ds):
        if not optional and not _maybe(text):  # cheap pre-check: every default kind needs one of these
            continue
        for d in detect_pii(text, kinds, allow, region=region, min_confidence=min_confidence):
            value = text[d.start:d.end]
            findings.append(PiiFinding(d.kind, row, fld, d.start, d.end, mask(value, d.kind), d.confidence))
    return PiiReport(tuple(findings), len(ds), kinds, min_confidence, region)


#: Found values shorter than this are not looked for again elsewhere (a 4-digit PIN is also a year or a count).
_COPY_MIN_LENGTH = 6


def _with_copies(ds: LoadedDataset, report: PiiReport) -> PiiReport:
    """``report`` plus every other place where a value it found appears verbatim, even where the words around
    it did not make it a finding ("call 2063428631" found; "id 2063428631 noted" in another row is the same
    number): redaction must leave no copy of a found value anywhere in the dataset."""
    texts = {(row, fld): text for row, fld, text in _iter_texts(ds)}
    values: dict[str, PiiFinding] = {}
    for f in report.findings:
        value = texts[(f.row, f.field)][f.start:f.end]
        if len(value) >= _COPY_MIN_LENGTH and (f.kind != "person" or " " in value.strip()):
            values.setdefault(value, f)
    if not values:
        return report
    pattern = re.compile("(?<![\\w])(?:" + "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
                         + ")(?![\\w])")
    taken: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for f in report.findings:
        taken.setdefault((f.row, f.field), []).append((f.start, f.end))
    copies = []
    for (row, fld), text in texts.items():
        for m in pattern.finditer(text):
            spans = taken.get((row, fld), [])
            if not any(m.start() < e and s < m.end() for s, e in spans):
                f = values[m.group(0)]
                copies.append(PiiFinding(f.kind, row, fld, m.start(), m.end(), f.masked, f.confidence))
    if not copies:
        return report
    findings = sorted(report.findings + tuple(copies), key=lambda f: (f.row, f.field, f.start))
    return PiiReport(tuple(findings), report.rows_scanned, report.kinds, report.min_confidence, report.region)


def redact_pii(ds: LoadedDataset, kinds: tuple[str, ...] | None = None, allow: tuple[str, ...] = (), *,
               action: str = "tags", region: str = "US", min_confidence: float = MIN_CONFIDENCE,
               salt: str | None = None, report: PiiReport | None = None) -> tuple[LoadedDataset, PiiReport]:
    """Redact personal data in every text field; returns the new dataset and what was found.

    ``action``: ``tags`` (``[EMAIL]``), ``pseudonyms`` (the same made-up value for the same value
    in every row: see ``pseudonym``), or ``drop`` (remove each row that holds any). ``report``: a
    ``scan_pii`` of ``ds`` with the same settings, to skip scanning again.
    """
    if action not in ACTIONS:
        raise ValueError(f"pii action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if report is None:
        report = scan_pii(ds, kinds, allow, region=region, min_confidence=min_confidence)
    if not report.findings:
        return ds, report
    report = _with_copies(ds, report)
    touched = sorted({f.row for f in report.findings})
    if action == "drop":
        return ds.with_frame(ds.frame.drop(index=ds.frame.index[touched])), report
    by_place: dict[tuple[int, str], list[Detection]] = {}
    for f in report.findings:
        by_place.setdefault((f.row, f.field), []).append(Detection(f.kind, f.start, f.end, f.confidence))
    frame = ds.frame.copy()
    for fld in _text_fields(ds):
        values = frame[fld].tolist()
        for row in touched:
            v = values[row]
            if fld == "messages":
                values[row] = [{**m, "content": _replace(m["content"], by_place.get((row, f"messages[{j}].content"), []),
                                                         action, salt)} for j, m in enumerate(v)]
            elif isinstance(v, str) and (row, fld) in by_place:
                values[row] = _replace(v, by_place[(row, fld)], action, salt)
        frame[fld] = values
    return ds.with_frame(frame), report


# --------------------------------------------------------------------------- secrets in configs and manifests

#: Keys whose values are secrets: ``token``, ``hub_token``, ``api-key``, ``password``... (not ``max_new_tokens``).
SECRET = re.compile(r"(?:^|[_-])(?:token|secret|password|passwd|pwd|api[_-]?key|access[_-]?key|auth|credentials?)$",
                    re.I)
#: ``password=x``, ``token: x``, ``api-key = x`` inside a string (a command line, a URL query, a source).
SECRET_ASSIGNMENT = re.compile(r"(?<![A-Za-z0-9])((?:[A-Za-z0-9]+[_-])*(?:token|secret|password|passwd|pwd|api[_-]?key|access[_-]?key)\s*[=:]\s*)"
                               r"(?!\*\*\*|\"\"|'')[^\s,;&]+", re.I)
#: What the personal-data scanner finds that is a secret, not personal data.
SECRET_KINDS = ("url_credentials", "private_key", "api_key", "password")
#: What ``redact`` leaves where a secret was.
REDACTED = ("***", "[CREDENTIALS]", "[PRIVATE_KEY]", "[API_KEY]", "[PASSWORD]")


def redact_secrets(value, key: str = ""):
    """``value`` with its secrets replaced, wherever they come from (a spec, ``-p``, the command line).

    Values under secret-looking keys (token, password, api_key...) become ``***``; in strings, what the
    personal-data scanner calls a secret (``SECRET_KINDS``: ``user:password@`` in URLs, private keys, API
    key shapes, a value after ``password:``) becomes its tag, and ``password=x`` / ``token: x`` become
    ``password=***`` / ``token: ***`` whatever the value looks like.
    """
    if isinstance(value, dict):
        return {k: redact_secrets(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_secrets(v, key) for v in value]
    if key and SECRET.search(key) and value not in (None, ""):
        return "***"
    if isinstance(value, str):
        value = redact_text(value, kinds=SECRET_KINDS)[0]
        return SECRET_ASSIGNMENT.sub(r"\1***", value)
    return value
