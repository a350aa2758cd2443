"""Personal data: each kind found, validated (Luhn, mod-97, IP ranges), redacted, never shown whole."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.data import find_pii, load_dataset, redact_pii, redact_text, scan_pii
from workbench.data.pii import iban_ok, luhn_ok, mask

FOUND = [
    ("mail me at j.okafor@northwind.example today", "email", "j.okafor@northwind.example"),
    ("call +44 7700 900123 after 5", "phone", "+44 7700 900123"),
    ("US office (512) 555-0147", "phone", "(512) 555-0147"),
    ("mobile 07700 900123", "phone", "07700 900123"),
    ("NL +31 6 12345678", "phone", "+31 6 12345678"),
    ("card 4111 1111 1111 1111 exp 12/28", "credit_card", "4111 1111 1111 1111"),
    ("amex 3782 822463 10005", "credit_card", "3782 822463 10005"),
    ("pay to GB82WEST12345698765432 please", "iban", "GB82WEST12345698765432"),
    ("IBAN NL91 ABNA 0417 1643 00", "iban", "NL91 ABNA 0417 1643 00"),
    ("host 10.4.22.17 is down", "ip_address", "10.4.22.17"),
    ("v6 fe80::1ff:fe23:4567:890a here", "ip_address", "fe80::1ff:fe23:4567:890a"),
    ("see https://svc_backup:Winter2026!@files.northwind.example/share", "url_credentials", "svc_backup:Winter2026!"),
    ("my password is Tr0ub4dor&3 thanks", "password", "Tr0ub4dor&3"),
    ("password: Autumn#2026", "password", "Autumn#2026"),
    ("api_key=9f8e7d6c5b4a3f2e1d", "password", "9f8e7d6c5b4a3f2e1d"),
    ("aws AKIAIOSFODNN7EXAMPLE", "api_key", "AKIAIOSFODNN7EXAMPLE"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123", "api_key", "ghp_abcdefghijklmnopqrstuvwxyz0123"),
    ("slack xoxb-123456789012-abcdefghij", "api_key", "xoxb-123456789012-abcdefghij"),
    ("openai sk-proj-abcdefghijklmnop1234", "api_key", "sk-proj-abcdefghijklmnop1234"),
]

NOT_FOUND = [
    "my password is expired",
    "What do I do if my PIN was blocked?",
    "order 4111 1111 1111 1112 failed",           # fails Luhn
    "GB82WEST12345698765433",                       # fails mod-97
    "version 10.0.19045.2846 and 999.1.1.1",        # not IPv4
    "on 2026-09-14 at 10:30, ticket T0001, ext. 4357",
    "build 1.2.3, step 12 of 40, 3.5 GB free",
    "the meeting is 12:30:45",
]


@pytest.mark.parametrize("text,kind,value", FOUND)
def test_each_kind_is_found(text, kind, value):
    spans = find_pii(text)
    assert [(k, text[s:e]) for k, s, e in spans] == [(kind, value)]


@pytest.mark.parametrize("text", NOT_FOUND)
def test_lookalikes_are_not_flagged(text):
    assert find_pii(text) == []


def test_validators_by_hand():
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89 3704 0044 0532 0130 01")


def test_redaction_replaces_with_tags_and_keeps_the_rest():
    text, spans = redact_text("Reach me on j.doe@example.com or +44 7700 900123.")
    assert text == "Reach me on [EMAIL] or [PHONE]."
    assert [k for k, _, _ in spans] == ["email", "phone"]
    text, _ = redact_text("creds https://admin:S3cret!pass@nas01.example.com/ ok")
    assert text == "creds https://[CREDENTIALS]@nas01.example.com/ ok"


def test_masking_never_shows_the_value():
    assert mask("Tr0ub4dor&3", "password") == "********"
    assert mask("j.okafor@northwind.example", "email") == "j." + "*" * 22 + "le"
    assert "ghp_abc" not in mask("ghp_abcdefghijklmnopqrstuvwxyz0123", "api_key")


def test_scan_and_redact_a_dataset_including_chat():
    df = pd.DataFrame({"messages": [
        [{"role": "user", "content": "my email is a.b@example.org"}, {"role": "assistant", "content": "Thanks."}],
        [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Call 020 7946 0018."}],
    ]})
    ds = load_dataset(df)
    report = scan_pii(ds)
    assert report.counts == {"email": 1, "phone": 1}
    assert {(f.row, f.field) for f in report.findings} == {(0, "messages[0].content"), (1, "messages[1].content")}
    clean, _ = redact_pii(ds)
    assert clean.frame["messages"].iat[0][0]["content"] == "my email is [EMAIL]"
    assert clean.frame["messages"].iat[1][1]["content"] == "Call [PHONE]."
    assert ds.frame["messages"].iat[0][0]["content"] == "my email is a.b@example.org"  # original untouched
    assert scan_pii(clean).findings == ()


def test_allow_list_keeps_role_mailboxes():
    text = "Forward it to security@northwind.example, not to j.doe@example.com."
    assert redact_text(text, allow=("Security@Northwind.example",))[0] == \
        "Forward it to security@northwind.example, not to [EMAIL]."
