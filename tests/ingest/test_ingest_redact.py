"""Redaction on tricky cases, both ways: what must be replaced and what must survive."""

from __future__ import annotations

import pytest

from annotune.ingest.redact import luhn_ok, redact

MUST_REDACT = [
    ("write to jane.doe+news@mail.example.co.uk today", "EMAIL"),
    ("call +1 (555) 123-4567 now", "PHONE"),
    ("call (555) 123-4567 now", "PHONE"),
    ("call 555-123-4567 now", "PHONE"),
    ("call 555.123.4567 now", "PHONE"),
    ("call +44 20 7946 0958 now", "PHONE"),
    ("call 020 7946 0958 now", "PHONE"),
    ("call +49 30 1234567 now", "PHONE"),
    ("call 06 12 34 56 78 now", "PHONE"),
    ("call +4930123456 now", "PHONE"),
    ("card 4111 1111 1111 1111 expires", "CARD"),
    ("card 4111-1111-1111-1111 expires", "CARD"),
    ("card 5500005555555559 expires", "CARD"),
    ("amex 3782 822463 10005 expires", "CARD"),
    ("iban DE89 3704 0044 0532 0130 00 please", "IBAN"),
    ("iban GB82WEST12345698765432 please", "IBAN"),
    ("server 192.168.1.20 is down", "IP"),
    ("server 2001:db8::8a2e:370:7334 is down", "IP"),
]

MUST_SURVIVE = [
    "version 1.2.3 and v10.0.19041.1 and firmware 2.4.10.3",
    "released 2024-03-15, 15.03.2024, 03/15/2024 and 1.5.2024",
    "order ORD-2024-000123 and order #100234567 and ticket 5551234567",
    "ISBN 978-3-16-148410-0, pi 3.14159, total 1,234,567.89",
    "pages 12-14, years 2023 2024, 20 000 people, 9:00 to 17:30, 12:30:45",
    "card-like but failing Luhn: 4111 1111 1111 1112",
    "IBAN-like but failing mod 97: DE89 3704 0044 0532 0130 01",
    "not an address 999.300.1.1 nor user@localhost",
]


@pytest.mark.parametrize("text,kind", MUST_REDACT)
def test_redacted(text, kind):
    redacted, counts = redact(text)
    assert f"<{kind}>" in redacted and counts == {kind: 1}, redacted
    assert not any(ch.isdigit() for ch in redacted.replace("<", "").split()[1]), redacted


@pytest.mark.parametrize("text", MUST_SURVIVE)
def test_survives(text):
    assert redact(text) == (text, {})


def test_custom_patterns_and_counts():
    text = "Customer CUST-00123 wrote from a@b.io and c@d.io about CUST-00456."
    redacted, counts = redact(text, {"customer_id": r"CUST-\d{5}"})
    assert redacted == "Customer <CUSTOMER_ID> wrote from <EMAIL> and <EMAIL> about <CUSTOMER_ID>."
    assert counts == {"EMAIL": 2, "CUSTOMER_ID": 2}


def test_luhn():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_kept_values_stay_whatever_their_spelling_and_others_are_still_redacted():
    from annotune.ingest.redact import pii_key

    keep = frozenset(pii_key(v) for v in ["Support@Acme.example", "+1 555 010 0199", "ACME-42"])
    text = ("Write to support@acme.example or call +1 (555) 010-0199; "
            "a customer wrote from jane@mail.example and from +1 (555) 123-4567 about ACME-42 and ACME-43.")
    redacted, counts = redact(text, {"ticket": r"ACME-\d+"}, keep)
    assert redacted == ("Write to support@acme.example or call +1 (555) 010-0199; "
                        "a customer wrote from <EMAIL> and from <PHONE> about ACME-42 and <TICKET>.")
    assert counts == {"EMAIL": 1, "PHONE": 1, "TICKET": 1}
