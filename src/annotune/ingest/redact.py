"""PII redaction: typed placeholders for e-mails, phone numbers, card numbers, IBANs and IP addresses.

Each kind is a regular expression that finds candidates plus a check that confirms them (Luhn for cards,
mod-97 for IBANs, octet ranges for IPv4, digit counts and date shapes for phones), so that version numbers,
dates and order ids survive. Custom patterns from the config are applied after the built-in ones.

An allow-list (``keep``) names values that stay as they are: the organisation's own published support
address and phone number are knowledge the model should learn, not personal data.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from functools import lru_cache

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
CARD = re.compile(r"(?<![\w.-])(?:\d[ -]?){12,18}\d(?![\w-]|\.\d)")
IPV4 = re.compile(r"(?<![\w.-])(?:\d{1,3}\.){3}\d{1,3}(?![\w-]|\.\d)")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Phone candidates: an optional +country code, an optional (area code), then digit groups joined by
# space, dot, dash or slash. Whether a candidate is a phone number is decided by _is_phone.
PHONE = re.compile(r"(?<![\w.+/-])(?:\+\d{8,15}(?!\w)|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{2,5}(?:[ ./-]\d{2,8}){0,5}(?![\w-]|[./]\d))")
_DATE = re.compile(r"\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
_NANP = re.compile(r"\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}")
_VERSION_CONTEXT = re.compile(r"(?:\b(?:v|version|release|build|firmware|ver)\.?\s*)$", re.IGNORECASE)

_DIGIT = re.compile(r"\d")
KINDS = ("EMAIL", "IBAN", "CARD", "IP", "PHONE")


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_card(match: re.Match, text: str) -> bool:
    raw = match.group()
    digits = re.sub(r"\D", "", raw)
    # Issuer prefixes (Amex, Visa, Mastercard, Discover, JCB, UnionPay, Maestro ...) all start with 2-6.
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456" or not luhn_ok(digits):
        return False
    if len(set(re.findall(r"[ -]", raw))) > 1:
        return False  # one separator throughout, as printed on cards and receipts
    groups = [len(group) for group in re.split(r"[ -]", raw)]
    # Printed groupings: 4-4-4-4(-3) for most cards, 4-6-5 and 4-6-4 for Amex and Diners.
    return len(groups) == 1 or groups in ([4, 6, 5], [4, 6, 4]) or (
        all(n == 4 for n in groups[:-1]) and groups[-1] in (3, 4) and len(groups) in (4, 5))


def _is_iban(match: re.Match, text: str) -> bool:
    compact = match.group().replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _is_ipv4(match: re.Match, text: str) -> bool:
    if _VERSION_CONTEXT.search(text[max(0, match.start() - 12):match.start()]):
        return False
    return all(int(part) <= 255 and (part == "0" or not part.startswith("0")) for part in match.group().split("."))


def _is_ipv6(match: re.Match, text: str) -> bool:
    candidate = match.group()
    if candidate.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _is_phone(match: re.Match, text: str) -> bool:
    candidate = match.group()
    digits = re.sub(r"\D", "", candidate)
    if _DATE.fullmatch(candidate) or _VERSION_CONTEXT.search(text[max(0, match.start() - 12):match.start()]):
        return False
    if candidate.isdigit():
        return False  # a bare run of digits is as likely an order or account id as a phone number
    if candidate.startswith("+"):
        return 8 <= len(digits) <= 15
    if "(" in candidate or _NANP.fullmatch(candidate):
        return 10 <= len(digits) <= 15
    # National numbers written with a trunk prefix: 020 7946 0958, 030/1234567, 06 12 34 56 78.
    return candidate.startswith("0") and "." not in candidate and 9 <= len(digits) <= 12


Check = Callable[[re.Match, str], bool]
BUILTIN: tuple[tuple[str, re.Pattern, Check | None], ...] = (
    ("EMAIL", EMAIL, None),
    ("IBAN", IBAN, _is_iban),
    ("CARD", CARD, _is_card),
    ("IP", IPV4, _is_ipv4),
    ("IP", IPV6, _is_ipv6),
    ("PHONE", PHONE, _is_phone),
)


@lru_cache(maxsize=8)
def _custom(patterns: tuple[tuple[str, str], ...]) -> tuple[tuple[str, re.Pattern, None], ...]:
    return tuple((name.upper(), re.compile(pattern), None) for name, pattern in patterns)


def pii_key(value: str) -> str:
    """What two spellings of one value share: an e-mail address in lower case; anything else (a phone number,
    an IBAN, a card, an IP, a custom match) as its letters and digits only, so that ``+1 (555) 010-0199``
    and ``+1 555 010 0199`` are the same."""
    value = value.strip().lower()
    return value if "@" in value else re.sub(r"[^0-9a-z]", "", value)


def redact(text: str, custom: dict[str, str] | None = None,
           keep: frozenset[str] = frozenset()) -> tuple[str, Counter]:
    """``text`` with each confirmed match replaced by ``<KIND>``, and how many of each kind were replaced.

    ``keep`` holds :func:`pii_key` of values left as they are."""
    counts: Counter = Counter()
    # Every built-in kind but e-mail needs a digit, and e-mail needs an @: most paragraphs skip all of them.
    has_digit, has_at = _DIGIT.search(text) is not None, "@" in text
    for kind, pattern, check in BUILTIN + _custom(tuple(sorted((custom or {}).items()))):
        if check is not None and not has_digit or kind == "EMAIL" and not has_at:
            continue

        def replace(match: re.Match, kind=kind, check=check, current=text) -> str:
            if check is not None and not check(match, current) or keep and pii_key(match.group()) in keep:
                return match.group()
            counts[kind] += 1
            return f"<{kind}>"

        text = pattern.sub(replace, text)
    return text, counts
