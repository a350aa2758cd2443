"""Generate the labelled personal-data benchmark: ``benchmarks/data/pii_benchmark.jsonl``.

    .venv/bin/python benchmarks/pii_benchmark_data.py            # writes the file (seed 16)
    .venv/bin/python benchmarks/pii_benchmark_data.py --check    # regenerates and compares

It also writes ``benchmarks/data/pii_probe.jsonl``: 40 texts written by hand (``PROBE``) after the
detector was tuned on the generated set, in other phrasings, never tuned on.

Each line is one text: ``{"id", "style", "country", "text", "spans": [{"start", "end", "kind"}]}``.
Styles are support tickets, chats and emails; countries US, UK, DE, FR, NL, ES, IT, IN, each
text written with that country's phone, address, IBAN and date formats. Kinds: the structured
ones ``email``, ``phone``, ``credit_card``, ``iban``, ``ip_address``, ``url_credentials``,
``api_key``, ``password``, and the optional ``person`` and ``street_address``.

Every value is made up here, from a seeded ``random.Random``: phone numbers follow each
country's numbering plan (US area codes, UK 07xxx mobiles, DE 015x/017x, FR 06/07, NL 06, ES
6xx, IT 3xx, IN 6-9xxxx), card numbers pass Luhn with real network prefixes (Visa, Mastercard 51-55
and 2221-2720, Amex, Discover, Maestro 50/56-69, UnionPay, JCB), IBANs pass mod-97. The written
forms are the ones a scanner misses: ``1-512-...``, ``+CC-...``, unbroken, ``512/555/0147``,
``512_555_0147``, en-dashes, non-breaking spaces, cards with dots or slashes, emails with
fullwidth or ideographic dots or accented domains, IPv4 before a full stop or ``:port``, IPv6
in a sentence, passwords a few words after their keyword, ``user / pass`` pairs, PINs, and
vendor keys (SendGrid, Mailgun, GitLab, npm, Hugging Face, Azure, Bearer tokens).

Hard negatives are written into the same texts and into texts of their own, unlabelled: order,
reference, invoice and tracking numbers, European dates and times, ISBNs, version strings that
are valid IPv4 addresses, MAC addresses, clock times, Luhn-failing and mod-97-failing numbers,
and placeholders (``[REDACTED]``, ``********``, ``<password>``).
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from workbench.data.pii import luhn_check_digit  # noqa: E402 - after this checkout's path

OUT = Path(__file__).parent / "data" / "pii_benchmark.jsonl"
PROBE_OUT = Path(__file__).parent / "data" / "pii_probe.jsonl"
SEED = 16
COUNTRIES = ("US", "UK", "DE", "FR", "NL", "ES", "IT", "IN")

# ----------------------------------------------------------------------------- names and places

FIRST = {
    "US": ["James", "Emily", "Michael", "Ashley", "Tyler", "Brittany", "Marcus", "Jasmine", "Kevin", "Megan"],
    "UK": ["Oliver", "Amelia", "Harry", "Isla", "George", "Poppy", "Alfie", "Freya", "Callum", "Niamh"],
    "DE": ["Lukas", "Anna", "Jonas", "Lea", "Felix", "Sophie", "Maximilian", "Johanna", "Tobias", "Katrin"],
    "FR": ["Camille", "Louis", "Chloé", "Hugo", "Manon", "Théo", "Inès", "Julien", "Élodie", "Mathieu"],
    "NL": ["Daan", "Sanne", "Bram", "Lotte", "Jeroen", "Fleur", "Sem", "Anouk", "Thijs", "Marieke"],
    "ES": ["Lucía", "Alejandro", "Carmen", "Javier", "Sofía", "Pablo", "Marta", "Diego", "Elena", "Sergio"],
    "IT": ["Giulia", "Francesco", "Chiara", "Alessandro", "Martina", "Lorenzo", "Federica", "Matteo", "Sara", "Davide"],
    "IN": ["Priya", "Rahul", "Ananya", "Arjun", "Sneha", "Vikram", "Kavya", "Rohan", "Deepika", "Aditya"],
}
LAST = {
    "US": ["Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Rodriguez", "Wilson", "Anderson", "Taylor"],
    "UK": ["Smith", "Jones", "Hughes", "Evans", "Patel", "Wright", "Walker", "Thompson", "Clarke", "Robinson"],
    "DE": ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Becker", "Hoffmann", "Schäfer", "Koch", "Richter"],
    "FR": ["Martin", "Bernard", "Dubois", "Moreau", "Laurent", "Lefèvre", "Girard", "Fontaine", "Rousseau", "Mercier"],
    "NL": ["de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder"],
    "ES": ["García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz", "Hernández", "Díaz"],
    "IT": ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco"],
    "IN": ["Sharma", "Patel", "Reddy", "Iyer", "Nair", "Gupta", "Singh", "Kumar", "Mehta", "Chatterjee"],
}
STREETS = {
    "US": ["Maple Avenue", "Oak Street", "Sunset Boulevard", "Pine Road", "Elm Drive", "Lakeview Lane", "Cedar Court"],
    "UK": ["High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane", "Kings Road", "Park Avenue"],
    "DE": ["Hauptstraße", "Bahnhofstraße", "Gartenweg", "Schillerstraße", "Lindenallee", "Berliner Straße"],
    "FR": ["rue de la Paix", "avenue Victor Hugo", "boulevard Voltaire", "rue du Faubourg Saint-Honoré", "rue Pasteur"],
    "NL": ["Keizersgracht", "Kerkstraat", "Dorpsstraat", "Stationsweg", "Prinsengracht", "Molenweg"],
    "ES": ["Calle Mayor", "Calle de Alcalá", "Avenida de la Constitución", "Calle Real", "Paseo de Gracia"],
    "IT": ["Via Roma", "Via Garibaldi", "Corso Vittorio Emanuele", "Via Dante", "Viale Europa", "Via Mazzini"],
    "IN": ["MG Road", "Residency Road", "Linking Road", "Park Street", "Anna Salai", "Brigade Road"],
}
CITIES = {
    "US": [("Austin", "TX", "787"), ("Denver", "CO", "802"), ("Portland", "OR", "972"), ("Columbus", "OH", "432")],
    "UK": [("London", "SW1A"), ("Manchester", "M1"), ("Leeds", "LS1"), ("Bristol", "BS1")],
    "DE": [("Berlin", "10"), ("München", "80"), ("Hamburg", "20"), ("Köln", "50")],
    "FR": [("Paris", "75"), ("Lyon", "69"), ("Marseille", "13"), ("Toulouse", "31")],
    "NL": [("Amsterdam", "10"), ("Utrecht", "35"), ("Rotterdam", "30"), ("Eindhoven", "56")],
    "ES": [("Madrid", "28"), ("Barcelona", "08"), ("Valencia", "46"), ("Sevilla", "41")],
    "IT": [("Roma", "00"), ("Milano", "20"), ("Torino", "10"), ("Napoli", "80")],
    "IN": [("Bengaluru", "560"), ("Mumbai", "400"), ("Chennai", "600"), ("Kolkata", "700")],
}
DOMAINS = {
    "US": ["gmail.com", "outlook.com", "yahoo.com", "acme-corp.com", "brightlabs.io"],
    "UK": ["btinternet.com", "hotmail.co.uk", "northwind.co.uk", "sky.com"],
    "DE": ["web.de", "gmx.de", "t-online.de", "firma-schulz.de"],
    "FR": ["orange.fr", "free.fr", "laposte.net", "societe-durand.fr"],
    "NL": ["ziggo.nl", "kpnmail.nl", "xs4all.nl", "bedrijf.nl"],
    "ES": ["telefonica.net", "gmail.com", "empresa.es", "correo.es"],
    "IT": ["libero.it", "virgilio.it", "tiscali.it", "azienda.it"],
    "IN": ["rediffmail.com", "gmail.com", "infotech.in", "company.co.in"],
}
ACCENTED_DOMAINS = ["müller-bau.de", "café-lumière.fr", "españa-viajes.es", "zürich-partner.ch", "bäckerei-schön.de"]


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice(string.digits) for _ in range(n))


def person(r, c):
    return f"{r.choice(FIRST[c])} {r.choice(LAST[c])}"


def _ascii(s: str) -> str:
    table = str.maketrans("äöüéèêëàáíóúñçÉ", "aoueeeeaaiouncE")
    return s.translate(table).replace("ß", "ss").lower().replace(" ", "")


def email(r, c, name=None):
    name = name or person(r, c)
    first, last = name.split(" ", 1)
    local = r.choice([f"{_ascii(first)}.{_ascii(last)}", f"{_ascii(first)[0]}{_ascii(last)}",
                      f"{_ascii(first)}{r.randint(1, 99)}", f"{_ascii(last)}.{_ascii(first)[0]}",
                      f"{_ascii(first)}_{_ascii(last)}"])
    domain = r.choice(DOMAINS[c])
    style = r.random()
    if style < 0.06:
        return local + "@" + domain.replace(".", "\uff0e")        # fullwidth full stop
    if style < 0.12:
        return local + "@" + domain.replace(".", "\u3002")        # ideographic full stop
    if style < 0.18:
        return f"{local}@{r.choice(ACCENTED_DOMAINS)}"
    if style < 0.21:
        return f"{local}\uff20{domain}"                           # fullwidth at sign
    return f"{local}@{domain}"


US_AREA = ["212", "312", "415", "512", "617", "713", "206", "303", "404", "503", "602", "702", "305", "646", "917"]


def phone(r, c):
    """A phone number in one of the country's written forms (national and international)."""
    if c == "US":
        a, b, n = r.choice(US_AREA), str(r.randint(2, 9)) + _digits(r, 2), _digits(r, 4)
        if r.random() < 0.15:
            b, n = "555", "01" + _digits(r, 2)
        forms = [f"({a}) {b}-{n}", f"{a}-{b}-{n}", f"1-{a}-{b}-{n}", f"+1 {a} {b} {n}", f"+1-{a}-{b}-{n}",
                 f"{a}{b}{n}", f"{a}/{b}/{n}", f"{a}_{b}_{n}", f"{a}\u2013{b}\u2013{n}", f"{a}.{b}.{n}",
                 f"+1 ({a}) {b}-{n}", f"1 ({a}) {b}-{n}"]
    elif c == "UK":
        if r.random() < 0.6:
            m = "7" + r.choice("4589") + _digits(r, 2)
            rest = _digits(r, 6)
            if r.random() < 0.15:
                m, rest = "7700", "900" + _digits(r, 3)
            forms = [f"0{m} {rest}", f"0{m}{rest}", f"+44 {m} {rest}", f"+44 {m[:4]} {rest[:3]} {rest[3:]}",
                     f"+44-{m}-{rest}", f"+44 (0){m} {rest}", f"0{m}\u00a0{rest}"]
        else:
            area, rest = r.choice([("20", 8), ("161", 7), ("113", 7), ("117", 7)])
            num = str(r.randint(2, 8)) + _digits(r, rest - 1)
            mid = 4 if rest == 8 else 3
            forms = [f"0{area} {num[:mid]} {num[mid:]}", f"+44 {area} {num[:mid]} {num[mid:]}",
                     f"(0{area}) {num[:mid]} {num[mid:]}", f"0{area}{num}"]
    elif c == "DE":
        if r.random() < 0.6:
            pre = r.choice(["151", "152", "160", "170", "171", "172", "176", "157"])
            num = _digits(r, 8 if pre[:2] in ("15", "17") and pre != "157" else 7)
            if pre == "157":
                num = _digits(r, 8)
            forms = [f"0{pre} {num}", f"0{pre}/{num}", f"0{pre}-{num}", f"+49 {pre} {num}", f"+49-{pre}-{num}",
                     f"+49 (0){pre} {num}", f"0{pre}{num}", f"0{pre} {num[:4]} {num[4:]}"]
        else:
            area, n = r.choice([("30", 8), ("89", 8), ("40", 8), ("221", 7)])
            num = str(r.randint(2, 9)) + _digits(r, n - 1)
            forms = [f"0{area} {num}", f"0{area}/{num}", f"+49 {area} {num}", f"(0{area}) {num}",
                     f"0{area}-{num}"]
    elif c == "FR":
        first = r.choice(["6", "7", "1", "4", "5"])
        if first == "7":
            p = [first + str(r.randint(3, 8))] + [_digits(r, 2) for _ in range(4)]
        else:
            p = [first + _digits(r, 1)] + [_digits(r, 2) for _ in range(4)]
        d = p[0] + "".join(p[1:])  # 9 digits after the 0
        groups = ["0" + d[0]] + [d[i:i + 2] for i in range(1, 9, 2)]
        forms = [" ".join(groups), ".".join(groups), "-".join(groups), "0" + d,
                 "+33 " + d[0] + " " + " ".join(groups[1:]), "+33 (0)" + d[0] + " " + " ".join(groups[1:]),
                 "+33-" + d[0] + "-" + "-".join(groups[1:]), "\u00a0".join(groups)]
    elif c == "NL":
        if r.random() < 0.6:
            num = str(r.randint(1, 5)) + _digits(r, 7)
            forms = [f"06 {num}", f"06-{num}", f"06{num}", f"+31 6 {num}", f"+31-6-{num}", f"+31 (0)6 {num}",
                     f"06 {num[:2]} {num[2:4]} {num[4:6]} {num[6:]}"]
        else:
            area = r.choice(["20", "30", "10", "40"])
            num = str(r.randint(2, 8)) + _digits(r, 6)
            forms = [f"0{area} {num[:3]} {num[3:]}", f"0{area}-{num}", f"+31 {area} {num[:3]} {num[3:]}",
                     f"(0{area}) {num}"]
    elif c == "ES":
        num = r.choice(["6", "7", "9"]) + _digits(r, 8)
        if num[0] == "7":
            num = "7" + str(r.randint(1, 4)) + _digits(r, 7)
        if num[0] == "9":
            num = "91" + _digits(r, 7)
        forms = [f"{num[:3]} {num[3:6]} {num[6:]}", f"{num}", f"+34 {num[:3]} {num[3:6]} {num[6:]}",
                 f"+34-{num}", f"{num[:3]} {num[3:5]} {num[5:7]} {num[7:]}", f"(+34) {num}"]
    elif c == "IT":
        if r.random() < 0.6:
            num = "3" + r.choice(["20", "28", "33", "38", "40", "47", "49", "66", "88", "93"]) + _digits(r, 7)
            forms = [f"{num[:3]} {num[3:6]} {num[6:]}", f"{num[:3]} {num[3:]}", f"{num}", f"+39 {num[:3]} {num[3:]}",
                     f"+39-{num}", f"{num[:3]}-{num[3:]}", f"{num[:3]}/{num[3:]}"]
        else:
            area = r.choice(["02", "06", "011", "081"])
            num = str(r.randint(2, 8)) + _digits(r, 7 if len(area) == 2 else 6)
            forms = [f"{area} {num}", f"{area}/{num}", f"+39 {area} {num}", f"{area}-{num[:4]} {num[4:]}"]
    else:  # IN
        num = str(r.randint(6, 9)) + _digits(r, 9)
        forms = [f"{num[:5]} {num[5:]}", f"+91 {num[:5]} {num[5:]}", f"+91-{num}", f"+91 {num}", f"{num}",
                 f"0{num[:5]} {num[5:]}", f"+91-{num[:5]}-{num[5:]}", f"(+91) {num[:5]}\u2013{num[5:]}"]
    return r.choice(forms)


def luhn_complete(body: str) -> str:
    return body + luhn_check_digit(body)


CARD_PREFIXES = [("4", 16), ("4", 16), ("51", 16), ("53", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15),
                 ("37", 15), ("6011", 16), ("5018", 16), ("5020", 19), ("5038", 16), ("6304", 16), ("6759", 16),
                 ("6761", 19), ("56", 16), ("58", 16), ("62", 16), ("3528", 16), ("6799", 18), ("5893", 16)]


def card_number(r, valid=True):
    prefix, n = r.choice(CARD_PREFIXES)
    body = prefix + _digits(r, n - len(prefix) - 1)
    num = luhn_complete(body)
    if not valid:
        num = num[:-1] + str((int(num[-1]) + r.randint(1, 9)) % 10)
    return num


def card(r, c):
    num = card_number(r)
    if len(num) == 15:
        groups = [num[:4], num[4:10], num[10:]]
    else:
        groups = [num[i:i + 4] for i in range(0, len(num), 4)]
    sep = r.choice([" ", " ", " ", "-", "", "\u00a0", ".", "/", "\u202f"])
    return sep.join(groups)


IBAN_SPEC = {"DE": ("DE", 18, "n"), "UK": ("GB", 18, "b"), "FR": ("FR", 23, "n"), "NL": ("NL", 14, "b"),
             "ES": ("ES", 20, "n"), "IT": ("IT", 23, "i"), "US": ("CH", 17, "n"), "IN": ("BE", 12, "n")}


def iban_value(r, c, valid=True):
    cc, n, style = IBAN_SPEC[c]
    if style == "b":
        bank = "".join(r.choice(string.ascii_uppercase) for _ in range(4))
        bban = bank + _digits(r, n - 4)
    elif style == "i":
        bban = r.choice(string.ascii_uppercase) + _digits(r, n - 1)
    else:
        bban = _digits(r, n)
    num = int("".join(str(int(ch, 36)) for ch in bban + cc + "00"))
    check = 98 - num % 97
    iban = f"{cc}{check:02d}{bban}"
    if not valid:
        iban = iban[:-1] + str((int(iban[-1]) + 1) % 10)
    return iban


def iban(r, c):
    v = iban_value(r, c)
    return " ".join(v[i:i + 4] for i in range(0, len(v), 4)) if r.random() < 0.6 else v


def ipv4(r):
    first = r.choice([10, 172, 192, 81, 145, 203, 62, 95])
    if first == 192:
        return f"192.168.{r.randint(0, 20)}.{r.randint(2, 254)}"
    if first == 172:
        return f"172.{r.randint(16, 31)}.{r.randint(0, 255)}.{r.randint(2, 254)}"
    return f"{first}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(2, 254)}"


def ipv6(r):
    groups = ["2001", "db8"] + [format(r.randint(0, 0xFFFF), "x") for _ in range(r.choice([2, 3, 6]))]
    if len(groups) == 8:
        return ":".join(groups)
    return ":".join(groups[:2]) + "::" + ":".join(groups[2:])


def rand(r, alphabet, n):
    return "".join(r.choice(alphabet) for _ in range(n))


AZ = string.ascii_letters + string.digits
B64 = AZ + "+/"
HEX = "0123456789abcdef"


def api_key(r):
    kind = r.randrange(15)
    return [
        lambda: "AKIA" + rand(r, string.ascii_uppercase + string.digits, 16),
        lambda: "ghp_" + rand(r, AZ, 36),
        lambda: "github_pat_" + rand(r, AZ, 22) + "_" + rand(r, AZ, 59),
        lambda: "xoxb-" + _digits(r, 12) + "-" + _digits(r, 13) + "-" + rand(r, AZ, 24),
        lambda: "sk-proj-" + rand(r, AZ + "-_", 48),
        lambda: "sk_live_" + rand(r, AZ, 24),
        lambda: "AIza" + rand(r, AZ + "-_", 35),
        lambda: "SG." + rand(r, AZ + "-_", 22) + "." + rand(r, AZ + "-_", 43),
        lambda: "key-" + rand(r, HEX, 32),
        lambda: "glpat-" + rand(r, AZ + "-_", 20),
        lambda: "npm_" + rand(r, AZ, 36),
        lambda: "hf_" + rand(r, AZ, 34),
        lambda: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + rand(r, AZ + "-_", 40) + "." + rand(r, AZ + "-_", 43),
        lambda: "rk_live_" + rand(r, AZ, 24),
        lambda: "xoxp-" + _digits(r, 11) + "-" + _digits(r, 12) + "-" + rand(r, HEX, 32),
    ][kind]()


WORDS = ["Sunflower", "Harbour", "Falcon", "Winter", "Tiger", "Maple", "Orbit", "Velvet", "Cobalt", "Lantern", "Quartz"]


def password(r):
    kind = r.randrange(6)
    if kind == 0:
        return r.choice(WORDS) + str(r.randint(10, 2099)) + r.choice("!#$%&*?")
    if kind == 1:
        return rand(r, AZ, 4) + r.choice("!@#$%^&*") + rand(r, AZ, 5) + str(r.randint(0, 9))
    if kind == 2:
        return r.choice(WORDS).lower() + "-" + r.choice(WORDS).lower() + "-" + str(r.randint(1, 99))
    if kind == 3:
        return r.choice(WORDS) + r.choice(WORDS) + str(r.randint(1, 99))
    if kind == 4:
        return rand(r, AZ + "!#%", 12)
    return "Welcome" + str(r.randint(1, 9)) + str(r.randint(2020, 2027))


def pin(r):
    return _digits(r, r.choice([4, 4, 4, 6]))


def street(r, c):
    """(address text, the part labelled street_address)."""
    st = r.choice(STREETS[c])
    no = str(r.randint(1, 240))
    city = r.choice(CITIES[c])
    if c == "US":
        return f"{no} {st}, {city[0]}, {city[1]} {city[2]}{_digits(r, 2)}"
    if c == "UK":
        return f"{no} {st}, {city[0]} {city[1]} {r.randint(1, 9)}{rand(r, 'ABDEFGHJLNPQRSTUWXYZ', 2)}"
    if c == "IN":
        return f"{no} {st}, {city[0]} {city[1]}{_digits(r, 3)}"
    if c == "FR":
        return f"{no} {st}, {city[1]}{_digits(r, 3)} {city[0]}"
    if c == "IT":
        return f"{st} {no}, {city[1]}{_digits(r, 3)} {city[0]}"
    if c == "NL":
        return f"{st} {no}, {city[1]}{_digits(r, 2)} {rand(r, 'ABCDEFGHJKLMNPRSTVWXZ', 2)} {city[0]}"
    return f"{st} {no}, {city[1]}{_digits(r, 3)} {city[0]}"  # DE, ES


# ----------------------------------------------------------------------------- hard negatives (unlabelled)

def order_no(r, c):
    return r.choice([f"Order {_digits(r, 3)}-{_digits(r, 7)}-{_digits(r, 7)}", f"order #{_digits(r, 3)} {_digits(r, 3)} {_digits(r, 4)}",
                     f"Reference {_digits(r, 4)} {_digits(r, 4)} {_digits(r, 4)}", f"Ref: {_digits(r, 3)}-{_digits(r, 3)}-{_digits(r, 4)}",
                     f"Invoice no. {_digits(r, 5)} {_digits(r, 5)}", f"invoice {_digits(r, 10)}",
                     f"Bestellnummer {_digits(r, 3)} {_digits(r, 4)} {_digits(r, 4)}", f"tracking number 1Z{rand(r, string.ascii_uppercase + string.digits, 16)}",
                     f"case {_digits(r, 2)}-{_digits(r, 4)}-{_digits(r, 4)}", f"PO {_digits(r, 4)}/{_digits(r, 4)}/{_digits(r, 2)}",
                     f"Referenz {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)}",
                     f"numéro de commande {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)} {_digits(r, 2)}",
                     f"account number {_digits(r, 8)}", f"customer ID {_digits(r, 9)}"])


def date_time(r, c):
    d, m, y = r.randint(1, 28), r.randint(1, 12), r.choice([2025, 2026])
    h, mi = r.randint(7, 19), r.choice([0, 15, 30, 45])
    return r.choice([f"{d:02d}.{m:02d}.{y} {h:02d}:{mi:02d}", f"{d:02d}/{m:02d}/{y} {h}:{mi:02d}", f"{y}-{m:02d}-{d:02d} {h:02d}:{mi:02d}:00",
                     f"{d:02d}.{m:02d}.{y % 100:02d}, {h:02d}:{mi:02d} Uhr", f"{d:02d}-{m:02d}-{y} {h:02d}h{mi:02d}",
                     f"{d}/{m}/{y}", f"{y}{m:02d}{d:02d}"])


def isbn(r):
    body = "978" + r.choice("0123") + _digits(r, 8)
    total = sum(int(ch) * (1 if i % 2 == 0 else 3) for i, ch in enumerate(body))
    full = body + str((10 - total % 10) % 10)
    return r.choice([f"ISBN {full[:3]}-{full[3]}-{full[4:6]}-{full[6:12]}-{full[12]}", f"ISBN {full}",
                     f"ISBN-13: {full[:3]}-{full[3:13]}"])


def version(r):
    return r.choice([f"version {r.randint(1, 12)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(100, 250)}",
                     f"{r.randint(2, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(100, 250)}",
                     f"build {r.randint(10, 30)}.{r.randint(1, 12)}.{r.randint(0, 9)}.{r.randint(1, 99)}",
                     f"firmware v{r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 9)}.{r.randint(0, 255)}",
                     f"release {r.randint(10, 11)}.0.{r.randint(17000, 22700)}.{r.randint(1000, 4000)}"])


PLACEHOLDERS = ["[REDACTED]", "********", "<password>", "[hidden]", "xxxxxxxx", "(sent separately)", "•••••••", "<redacted>"]


def other_negative(r, c):
    return r.choice([
        f"MAC address {':'.join(format(r.randint(0, 255), '02X') for _ in range(6))}",
        f"at {r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}",
        f"card ending in {_digits(r, 4)}",
        f"the number {card_number(r, valid=False)} was rejected as invalid",
        f"the IBAN {iban_value(r, c, valid=False)} failed validation",
        f"serial SN{rand(r, string.ascii_uppercase + string.digits, 10)}",
        f"commit {rand(r, HEX, 12)}",
        f"resolution 1920x1080 at 144 Hz",
        f"a total of €{r.randint(1, 99)}.{r.randint(100, 999)},{r.randint(10, 99)}",
        f"ext. {r.randint(1000, 9999)}",
        f"step {r.randint(1, 9)} of {r.randint(10, 40)}",
        f"ticket T{_digits(r, 6)}",
        f"uuid {rand(r, HEX, 8)}-{rand(r, HEX, 4)}-{rand(r, HEX, 4)}-{rand(r, HEX, 4)}-{rand(r, HEX, 12)}",
        f"error 0x{rand(r, HEX.upper(), 8)}",
    ])


# ----------------------------------------------------------------------------- templates

# A template is a string with {slots}. Labelled slots: person, email, phone, card, iban, ip, ip6, ipport,
# urlcred, apikey, bearer, azure, pw (a password value), pin, addr. Unlabelled slots: order, date, isbn,
# version, placeholder, neg. {me} is a person whose email the text also gives (self-consistent).
TICKET = [
    "Subject: Cannot log in\nUser {person} reports that the VPN rejects the temporary password we set for {person2}: {pw}. Callback on {phone}. {order}.",
    "Ticket from {person} ({email}): card {card} was charged twice on {date}. Please refund to {iban}.",
    "Server {ip} is unreachable since {date}; the failover {ipport} answers. Last deploy was {version}.",
    "Incident: host {ip}. Fixed by restarting the agent. Ref {order}; see also {isbn} for the runbook.",
    "Customer {person} asks to update the billing address to {addr}. Phone: {phone}. Email: {email}.",
    "Requester: {person} <{email}>\nThe API returns 401 with key {apikey} since the upgrade to {version}.",
    "The backup job uses {urlcred} and fails at {date}. Owner: {person}.",
    "Please rotate the leaked token {apikey} found in the repo; reported by {email}.",
    "Router admin: user / pass {user} / {pw}. Guest network is fine. WAN address {ip}.",
    "The new hire {person} needs a laptop. Her PIN for the door is {pin}; desk phone {phone}.",
    "Payment failed for {card} (exp {exp}). {neg}. Customer: {person}, {phone}.",
    "Storage connection string: DefaultEndpointsProtocol=https;AccountName=prodlogs;AccountKey={azure};EndpointSuffix=core.windows.net",
    "curl -H 'Authorization: Bearer {bearer}' https://api.internal.example/v2/users returns 500 since {version}.",
    "IPv6 client {ip6} cannot reach the portal, while {ip} can. {neg}.",
    "Refund request. IBAN: {iban}, account holder {person}. {order}. Password field shows {placeholder}.",
    "Please call {person} back on {phone} or {phone2} about {order}.",
    "wifi password to the meeting rooms is {pw}, please do not share. Firmware {version}.",
    "Subject: SFTP access\nHost {ip}, login {user}, password for the first login: {pw}. {neg}.",
    "Shipping address: {person}, {addr}. Contact {phone}. {date}.",
    "Crash on {version}, logs attached. {neg}. {neg2}. Reporter {email}.",
]
CHAT = [
    "user: hi, my card {card} got blocked\nagent: Sorry {person}! Can you confirm the phone number on the account?\nuser: {phone}",
    "user: I forgot my password\nagent: I have set a temporary one: {pw}\nuser: thanks, I'm {person}",
    "user: can you send the invoice to {email}?\nagent: Done. {order}.\nuser: great",
    "customer: my new address is {addr}\nagent: Updated, {person}. Anything else?\ncustomer: no, thanks",
    "user: the wifi password is {pw} right?\nagent: yes, valid until {date}",
    "user: my PIN is {pin} but the app says invalid\nagent: Please never share your PIN. I've reset it.",
    "user: server {ip}. is down again\nagent: Checking {ip2}:{port} now.",
    "user: is {ip6} on the allow list?\nagent: it is now. {neg}.",
    "user: reach me at {phone}, I'm {person}\nagent: Will do. {order}.",
    "agent: Hello {person}, I see {email} on file.\nuser: that's old, use {email2}\nagent: Updated.",
    "user: I pasted my key by mistake: {apikey}\nagent: I revoked it; please make a new one.",
    "user: transfer to {iban} please\nagent: Which amount? {neg}.\nuser: 250 EUR",
    "user: login is {user} pass {pw}\nagent: please change it right away, {person}.",
    "user: what's the ISBN of the manual?\nagent: {isbn}, {version}.",
    "user: version {version2} crashes at {date}\nagent: {neg}. Fixed in the next build.",
    "user: call me on {phone}\nagent: sure, {person}. My colleague {person2} will call.",
    "user: connect with {urlcred}\nagent: that URL has a password in it, rotating it.",
    "user: password is {placeholder} in the export, fine?\nagent: yes, {neg}.",
]
EMAIL = [
    "Hi {person},\n\nYour new account is ready. Username: {user}\nTemporary password for the portal: {pw}\n\nBest regards,\n{person2}\n{phone}",
    "Dear support,\n\nplease update my bank details to {iban} from {date} on.\n\nKind regards,\n{person}\n{addr}\nTel. {phone}",
    "Hello,\n\nThe monitoring alert came from {ip}. The load balancer ({ipport}) is healthy. {neg}.\n\nThanks,\n{person}",
    "Hi team,\n\nthe Hugging Face token {apikey} was committed in {version}. Revoke it please.\n\n-- {person} ({email})",
    "Dear {person},\n\nthank you for order {order2}. Payment with card {card} has been received.\n\nYour shop\n{phone}",
    "Good morning,\n\n{person} from our Paris office ({email}) will visit on {date}. Her mobile: {phone}.\n\nBest,\n{person2}",
    "Hi,\n\nthe staging DB is at {urlcred}; please move it to the vault.\n\n{person}",
    "Hello {person},\n\nyour one-time PIN is {pin}. It expires in 10 minutes.\n\n{neg}",
    "Hi,\n\nhere is the SendGrid key for the newsletter: {apikey}\n\nCheers, {person}",
    "To whom it may concern,\n\nI moved to {addr}. My new number is {phone} and my email {email}.\n\nSincerely,\n{person}",
    "Hello,\n\nattached the report ({isbn}). {order}. Times are CET ({date}).\n\nRegards,\n{person}",
    "Hi {person},\n\nthe secret for the webhook is {pw}; the Bearer token is {bearer}.\n\nThanks",
    "Hi,\n\nclient IP {ip6} was blocked. {neg}. {version}.\n\n{person}",
    "Dear {person},\n\nplease find your invoice. {order}. Password for the PDF: {placeholder}.\n\n{email}",
]
NEGATIVE = [
    "Subject: Build failing\nThe pipeline on {version} fails at step {n} since {date}. {order}.",
    "user: my password is expired\nagent: Use the reset link on the login page. {order}.",
    "Our records show {order}. {neg}. Delivery on {date}.",
    "Please see {isbn} and {version}. {neg}.",
    "The export masks secrets: password {placeholder}, token {placeholder2}. {date}.",
    "user: my PIN was blocked after 3 tries\nagent: I've unblocked it. {neg}.",
    "Meeting moved to {date}. {neg}. Agenda: {version} rollout, {order}.",
    "Hi,\n\n{order} has shipped. {neg}. {neg2}.\n\nThanks",
    "Firmware {version} fixes the Wi-Fi issue. {neg}. Reference build {version2}.",
    "agent: can you give me the last 4 digits only? {neg}.\nuser: ok, {date}.",
    "The password policy requires 12 characters. {order}. {neg}.",
    "Your token has expired, please sign in again. {date}. {version}.",
]
STYLE_TEMPLATES = {"ticket": TICKET, "chat": CHAT, "email": EMAIL, "negative": NEGATIVE}

def fill(template: str, r: random.Random, c: str) -> tuple[str, list[dict]]:
    """The template with its slots filled, and the labelled spans."""
    out, spans, pos = [], [], 0
    names: dict[str, str] = {}

    def add(text, kind=None, prefix="", suffix=""):
        nonlocal pos
        out.append(prefix)
        pos += len(prefix)
        if kind:
            spans.append({"start": pos, "end": pos + len(text), "kind": kind})
        out.append(text)
        pos += len(text)
        out.append(suffix)
        pos += len(suffix)

    i = 0
    while i < len(template):
        j = template.find("{", i)
        if j < 0:
            add(template[i:])
            break
        add(template[i:j])
        k = template.index("}", j)
        slot = template[j + 1:k]
        base = slot.rstrip("0123456789")
        i = k + 1
        if base == "person":
            names[slot] = person(r, c)
            add(names[slot], "person")
        elif base == "email":
            add(email(r, c, names.get("person") if slot == "email" and r.random() < 0.5 else None), "email")
        elif base == "phone":
            add(phone(r, c), "phone")
        elif base == "card":
            add(card(r, c), "credit_card")
        elif base == "iban":
            add(iban(r, c), "iban")
        elif base == "ip":
            add(ipv4(r), "ip_address")
        elif base == "ip6":
            add(ipv6(r), "ip_address")
        elif base == "ipport":
            add(ipv4(r), "ip_address", suffix=f":{r.choice([443, 8080, 22, 5432, 3389])}")
        elif base == "port":
            add(str(r.choice([443, 8080, 22, 5432])))
        elif base == "urlcred":
            user = r.choice(["svc_backup", "admin", "deploy", "root", "etl_user"])
            scheme = r.choice(["https", "postgres", "ftp", "mongodb+srv", "redis"])
            add(f"{user}:{password(r)}", "url_credentials", prefix=f"{scheme}://",
                suffix=f"@{r.choice(['db01', 'files', 'nas', 'cache'])}.{r.choice(['internal.example', 'corp.example.com'])}/data")
        elif base == "apikey":
            add(api_key(r), "api_key")
        elif base == "bearer":
            add(r.choice([api_key(r), rand(r, AZ + "-._~", 40)]), "api_key")
        elif base == "azure":
            add(rand(r, B64, 86) + "==", "api_key")
        elif base == "pw":
            add(password(r), "password")
        elif base == "pin":
            add(pin(r), "password")
        elif base == "user":
            add(r.choice(["admin", "jdoe", "m.rossi", "support01", "lukas.w", "guest"]))
        elif base == "addr":
            add(street(r, c), "street_address")
        elif base == "exp":
            add(f"{r.randint(1, 12):02d}/{r.randint(26, 31)}")
        elif base == "order":
            add(order_no(r, c))
        elif base == "date":
            add(date_time(r, c))
        elif base == "isbn":
            add(isbn(r))
        elif base == "version":
            add(version(r))
        elif base == "placeholder":
            add(r.choice(PLACEHOLDERS))
        elif base == "neg":
            add(other_negative(r, c))
        elif base == "n":
            add(str(r.randint(2, 40)))
        else:
            raise KeyError(f"unknown slot {{{slot}}} in template {template!r}")
    return "".join(out), spans


EXTRA_PASSWORD = [  # password phrasings beyond the templates above
    "Your temporary password for {person} is now {pw}, change it at first login.",
    "pw: {pw}", "pwd={pw}", "The new passcode is {pin}.", "PIN: {pin}", "passphrase is {pw}",
    "password for the guest wifi: {pw}", "user / pass = {user} / {pw}", "credentials: {user}/{pw}",
    "the password I set for the printer account is {pw}", "secret: {pw}", "token = {pw}",
    "Passwort für den Zugang: {pw}", "mot de passe du wifi : {pw}", "la contraseña nueva es {pw}",
    "wachtwoord is {pw}", "la password temporanea è {pw}",
]
EXTRA_KEYS = ["key {apikey}", "GITLAB_TOKEN={apikey}", "export HF_TOKEN={apikey}", "//registry.npmjs.org/:_authToken={apikey}",
              "Authorization: Bearer {bearer}", "AccountKey={azure}", "MAILGUN_API_KEY={apikey}"]


# ----------------------------------------------------------------------------- hand-written probe

# Written by hand after the detector was tuned on the generated set, in phrasings the templates do not
# use, and never tuned on: its figures are the fairer estimate. ``(style, country, text, [(kind, value)])``.
PROBE = [
    ("ticket", "US", "Caller said her cell is 713 555 0182 and her backup email is rosa.m@fastmail.com.", [("phone", "713 555 0182"), ("email", "rosa.m@fastmail.com")]),
    ("ticket", "US", "Order 713-555-0182 was split into two boxes; refund pending.", []),
    ("chat", "US", "user: the login for the kiosk is kiosk3 and the pw is Blue#Moon77\nagent: rotating it now", [("password", "Blue#Moon77")]),
    ("email", "US", "Hi Dana,\n\nplease wire it to the account ending 4417. My direct line: +1 (646) 555-0199.\n\nThanks, Greg Holt", [("person", "Dana"), ("phone", "+1 (646) 555-0199"), ("person", "Greg Holt")]),
    ("ticket", "UK", "Customer rang from 01632 960 983 about invoice INV-2026-0042.", [("phone", "01632 960 983")]),
    ("chat", "UK", "user: my sort code and account are 20-00-00 / 55779911\nagent: please don't share those here", []),
    ("email", "UK", "Morning,\n\nthe contractor's laptop (asset 44120) needs the BitLocker recovery key. Reach Tom Baker on 07911 456 789.\n\nCheers", [("person", "Tom Baker"), ("phone", "07911 456 789")]),
    ("ticket", "DE", "Kunde Jürgen Wolf, Tel. 089 / 2180 4433, bittet um Rückruf wegen Rechnung 2026-118.", [("person", "Jürgen Wolf"), ("phone", "089 / 2180 4433")]),
    ("email", "DE", "Hallo,\n\nbitte überweisen Sie auf DE02 1203 0000 0000 2020 51. Danke!\n\nPetra Krüger", [("iban", "DE02 1203 0000 0000 2020 51"), ("person", "Petra Krüger")]),
    ("chat", "DE", "user: Mein neues Kennwort ist Haus2026?Baum\nagent: Bitte nie Kennwörter im Chat teilen.", [("password", "Haus2026?Baum")]),
    ("ticket", "FR", "Client joignable au 01 42 68 53 00 ; commande n° 44 18 92 03 71 livrée le 03/11/2026.", [("phone", "01 42 68 53 00")]),
    ("email", "FR", "Bonjour,\n\nvoici l'adresse IP du serveur : 51.15.22.130. Le port 8443 est ouvert.\n\nCordialement,\nSophie Marchand", [("ip_address", "51.15.22.130"), ("person", "Sophie Marchand")]),
    ("chat", "NL", "user: bel me op 06-2851 7733 aub\nagent: prima, ik bel je om 14:30", [("phone", "06-2851 7733")]),
    ("ticket", "NL", "IBAN NL02ABNA0123456789 hoort bij klant Pieter Bos; factuur 2026/0077.", [("iban", "NL02ABNA0123456789"), ("person", "Pieter Bos")]),
    ("email", "ES", "Hola,\n\nmi móvil es el 699 12 34 56 y mi correo marta.ibanez@correo.es.\n\nUn saludo", [("phone", "699 12 34 56"), ("email", "marta.ibanez@correo.es")]),
    ("ticket", "ES", "Pedido 612 345 678 retrasado por la huelga.", []),
    ("chat", "IT", "user: il mio numero è 333 1234567\nagent: grazie, la richiamiamo entro oggi", [("phone", "333 1234567")]),
    ("email", "IT", "Buongiorno,\n\nla carta 5500 0055 5555 5559 risulta bloccata.\n\nDistinti saluti,\nMarco Esposito", [("credit_card", "5500 0055 5555 5559"), ("person", "Marco Esposito")]),
    ("ticket", "IN", "Caller Suresh Pillai (+91 98450 12345) reports UPI failures since build 3.2.1.180.", [("person", "Suresh Pillai"), ("phone", "+91 98450 12345")]),
    ("chat", "IN", "user: OTP nahi aaya, number 9845012345 hai\nagent: resend kar diya", [("phone", "9845012345")]),
    ("ticket", "US", "Jenkins job leaks GITHUB_TOKEN=ghp_9aZ8bY7cX6dW5eV4fU3gT2hS1iR0jQ9kP8lO in the console log.", [("api_key", "ghp_9aZ8bY7cX6dW5eV4fU3gT2hS1iR0jQ9kP8lO")]),
    ("email", "US", "Heads up: the .npmrc in the repo has //registry.npmjs.org/:_authToken=npm_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8 committed.", [("api_key", "npm_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8")]),
    ("ticket", "UK", "Database URL is mysql://reporting:R3port!ng2026@db-eu.corp.example:3306/sales", [("url_credentials", "reporting:R3port!ng2026")]),
    ("chat", "US", "user: it says my PIN 1234 is wrong\nagent: I've reset it, you'll get a new PIN by post", [("password", "1234")]),
    ("ticket", "US", "Password reset requested; the user's password field shows ******** in the export, as expected.", []),
    ("email", "US", "The staging box is 10.12.0.7, prod is 10.12.1.7: and the VPN gateway 2a01:4f8:c17:b8f::2 rejects both.", [("ip_address", "10.12.0.7"), ("ip_address", "10.12.1.7"), ("ip_address", "2a01:4f8:c17:b8f::2")]),
    ("ticket", "US", "Upgraded Chrome to 131.0.6778.86 and Office to 16.0.18129.20116; ISBN 978-1-4028-9462-6 for the training book.", []),
    ("chat", "US", "user: card is 3714 496353 98431, amex\nagent: thanks, charging now", [("credit_card", "3714 496353 98431")]),
    ("email", "FR", "Le code wifi invité : Bienvenue-2026 (valable une semaine).", [("password", "Bienvenue-2026")]),
    ("ticket", "US", "Meeting on 12/03/2026 at 10:30 with the vendor; quote Q-2026-1187 attached.", []),
    ("chat", "UK", "agent: could you confirm the last four digits of the card?\nuser: 4242\nagent: thanks Emma", [("person", "Emma")]),
    ("email", "US", "Send the signed form to legal@contoso.example or fax it to 212-555-0147.", [("email", "legal@contoso.example"), ("phone", "212-555-0147")]),
    ("ticket", "DE", "Seriennummer 4711 0815 2342, Firmware 2.14.0.3, keine personenbezogenen Daten.", []),
    ("email", "US", "Azure storage: DefaultEndpointsProtocol=https;AccountName=acmebackup;AccountKey=q8Zr7Yp6Xo5Wn4Vm3Ul2Tk1Sj0Ri9Qh8Pg7Of6Ne5Md4Lc3Kb2Ja1Iz0Hy9Gx8Fw7Ev6Du5Ct4Bs3Ar2Aq1Bp0Co9==;EndpointSuffix=core.windows.net", [("api_key", "q8Zr7Yp6Xo5Wn4Vm3Ul2Tk1Sj0Ri9Qh8Pg7Of6Ne5Md4Lc3Kb2Ja1Iz0Hy9Gx8Fw7Ev6Du5Ct4Bs3Ar2Aq1Bp0Co9==")]),
    ("chat", "US", "user: the hugging face token hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345678 stopped working\nagent: it was revoked", [("api_key", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345678")]),
    ("ticket", "US", "Tracking 9400 1000 0000 0000 0000 00 shows delivered; customer disputes.", []),
    ("email", "ES", "Estimado cliente,\n\nsu contraseña temporal es: Temp-4417-xq\n\nAtentamente,\nSoporte", [("password", "Temp-4417-xq")]),
    ("chat", "NL", "user: mijn e-mail is bram.dekker@ziggo．nl\nagent: aangepast", [("email", "bram.dekker@ziggo．nl")]),
    ("ticket", "IT", "Cliente Luca Moretti, via Po 14, 10123 Torino, chiede fattura elettronica.", [("person", "Luca Moretti"), ("street_address", "via Po 14, 10123 Torino")]),
    ("email", "US", "Please ship the replacement to 880 Brannan Street, San Francisco, CA 94103. Thanks, Nina Park", [("street_address", "880 Brannan Street, San Francisco, CA 94103"), ("person", "Nina Park")]),
]


def probe_rows() -> list[dict]:
    rows = []
    for i, (style, country, text, labels) in enumerate(PROBE):
        spans, pos = [], {}
        for kind, value in labels:
            start = text.index(value, pos.get(value, 0))
            pos[value] = start + len(value)
            spans.append({"start": start, "end": start + len(value), "kind": kind, "value": value})
        rows.append({"id": f"probe-{country.lower()}-{i:03d}", "style": style, "country": country, "text": text,
                     "spans": sorted(spans, key=lambda s: s["start"])})
    return rows


def generate(seed: int = SEED, per_style: int = 130) -> list[dict]:
    r = random.Random(seed)
    rows = []
    for style in ("ticket", "chat", "email", "negative"):
        n = per_style if style != "negative" else per_style // 2 + 15
        for i in range(n):
            c = COUNTRIES[i % len(COUNTRIES)]
            template = r.choice(STYLE_TEMPLATES[style])
            if style == "ticket" and i % 5 == 4:
                template = r.choice(EXTRA_PASSWORD) + " " + r.choice(EXTRA_KEYS) + ". {order}."
            text, spans = fill(template, r, c)
            rows.append({"id": f"{style}-{c.lower()}-{i:03d}", "style": style, "country": c, "text": text,
                         "spans": spans})
    for row in rows:  # spans must cover exactly their text
        for s in row["spans"]:
            s["value"] = row["text"][s["start"]:s["end"]]
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="fail if the file differs from a fresh generation")
    args = ap.parse_args(argv)
    rows = generate(args.seed)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    probe = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in probe_rows())
    if args.check:
        same = all(p.exists() and p.read_text(encoding="utf-8") == t for p, t in ((args.out, text), (PROBE_OUT, probe)))
        print(f"{args.out}, {PROBE_OUT}: {'up to date' if same else 'differ from a fresh generation'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    PROBE_OUT.write_text(probe, encoding="utf-8")
    print(f"wrote {len(PROBE)} hand-written texts to {PROBE_OUT}")
    kinds: dict[str, int] = {}
    for row in rows:
        for s in row["spans"]:
            kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    print(f"wrote {len(rows)} texts, {sum(kinds.values())} spans to {args.out}")
    print(", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
