"""Redaction of log events: no secret, code, card number or personal data leaves a process.

Two nets, both applied to every log event (`redact_event`, a structlog processor):
- by key: a field whose name says it is sensitive (`password`, `code`, `first_name`, ...) is
  replaced by REDACTED whatever its value;
- by shape: every string value (the message and tracebacks included) is scanned for API keys,
  Stripe secrets, bearer tokens, Fernet tokens, one-time codes next to their word, card numbers
  (13-19 digits passing the Luhn check), e-mail addresses and SQL parameters.
Names in free text cannot be recognised by shape: code must pass them as fields (redacted by
key), never inside a message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Field names (lower case, compared after stripping "_" and "-") whose values never reach a log.
SENSITIVE_KEYS = frozenset(k.replace("_", "") for k in (
    "password", "secret", "token", "api_key", "apikey", "authorization", "cookie",
    "idempotency_key", "code", "otp", "totp", "totp_secret", "second_factor", "passcode", "pin",
    "card", "card_number", "number", "pan", "cvc", "cvv", "exp_month", "exp_year",
    "email", "phone", "first_name", "last_name", "full_name", "name", "date_of_birth", "dob",
    "birth_date", "address", "address_line1", "postcode", "postal_code", "ssn", "document",
    "document_number", "iban", "account_number", "client_secret", "webhook_secret",
    "signing_secret", "key", "private_key", "encryption_key",
))

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # settlepay API keys (sp_<env>_<role>_<random>), Stripe secret / restricted keys and webhook
    # secrets, client secrets of PaymentIntents.
    (re.compile(r"\bsp_[a-z]+_[A-Za-z0-9_]{6,}"), "sp_" + REDACTED),
    (re.compile(r"\b(sk|rk)_(test|live)_[A-Za-z0-9_]+"), r"\1_\2_" + REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), "whsec_" + REDACTED),
    (re.compile(r"\b(pi|seti)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"), r"\1_" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    # Fernet tokens (sealed TOTP / webhook secrets) and base32 TOTP secrets.
    (re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}"), REDACTED),
    (re.compile(r"\b(?=[A-Z2-7]*[A-Z][A-Z2-7]*[A-Z])[A-Z2-7]{16,}={0,6}(?![A-Za-z0-9_])"),
     REDACTED),
    # A one-time code next to its word: "code 123456", "otp=123456", "'code': '123456'".
    (re.compile(r"(?i)\b(code|otp|totp|passcode|pin)(['\"]?\s*[:=]?\s*['\"]?\s*)\d{4,8}\b"),
     r"\1\2" + REDACTED),
    # E-mail addresses.
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"), "[EMAIL]"),
    # SQLAlchemy / psycopg error texts quote the statement's parameters.
    (re.compile(r"\[parameters: .*?\](?=\s*(\n|\(|$))", re.S), "[parameters: " + REDACTED + "]"),
    (re.compile(r"(?m)^(DETAIL:\s+Key \(.*?\)=)\(.*?\)"), r"\1(" + REDACTED + ")"),
]

_CARD = re.compile(r"(?<![\w.-])(?:\d[ -]?){12,18}\d(?![\w-])")


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


# Lower-case hex with at least one letter: trace and span ids, uuid4().hex request ids. No
# pattern above can match in such a text: each needs a character outside [0-9a-f] (an "_", an
# upper-case or other letter, a space, "@", "[") except _CARD, whose digit run must not touch a
# word character, so it would have to be the whole text, and this one holds a letter. One
# match instead of twelve scans: with telemetry on every log line carries two such ids.
_HEX_ID = re.compile(r"[0-9a-f]*[a-f][0-9a-f]*")


def redact_text(text: str) -> str:
    """`text` with every secret, code, card number and e-mail address it shows replaced."""
    if _HEX_ID.fullmatch(text):
        return text   # nothing to replace (see _HEX_ID)
    return _scan(text)


# What every shape above needs somewhere in a text to match at all, as one search: a text
# without any of it is left unchanged by all twelve (each pattern's own necessary part: "sp_";
# "_test_" / "_live_"; "whsec_"; "_secret_"; bearer / basic in any case; "gAAAAA"; 16 of
# [A-Z2-7] in a row; code / otp / pin in any case (totp, passcode hold them); "@";
# "[parameters: "; "DETAIL:"; 13 digits with at most one " " or "-" between two). The same
# flags as the patterns' own, so case folding (e.g. "ſ" for "s") matches alike. Most log
# texts (events, routes, logger names, times) have none: one search instead of twelve.
_MAYBE = re.compile(r"sp_|_test_|_live_|whsec_|_secret_|(?i:bearer|basic)|gAAAAA|[A-Z2-7]{16}"
                    r"|(?i:code|otp|pin)|@|\[parameters: |DETAIL:|(?:\d[ -]?){12}\d")


def _scan(text: str) -> str:
    """`_full_scan(text)`, skipped when no shape can match (`_MAYBE`)."""
    return _full_scan(text) if _MAYBE.search(text) else text


def _full_scan(text: str) -> str:
    text = _CARD.sub(_card, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_sensitive_key(key: str) -> bool:
    return key.lower().replace("_", "").replace("-", "") in SENSITIVE_KEYS


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: REDACTED if is_sensitive_key(str(k)) else redact_value(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [redact_value(item) for item in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact_text(str(value))


# Fields the logging pipeline itself sets: their names are not sensitive, their values are ids.
_OWN_FIELDS = frozenset({"event", "level", "logger", "timestamp", "trace_id", "span_id",
                         "request_id", "workflow_id", "run_id", "workflow_type", "activity_type",
                         "activity_id", "service", "exception"})


# The trace and span ids logs.py adds, in the exact form it writes them (32 and 16 lower-case
# hex digits): kept as they are. Scanned, an all-digit span id passing the Luhn check (about one
# in 20,000) would read "[CARD]" and its log line would lose its span.
# The same for the time the pipeline stamps (structlog's TimeStamper, ISO in UTC: digits, "-",
# ":", ".", "T" and "Z"), which no shape can match (no run of 13 digits, no letter but T and
# Z): a line's costliest text to search, kept without a search.
_ID_FORMATS = {"trace_id": re.compile(r"[0-9a-f]{32}"), "span_id": re.compile(r"[0-9a-f]{16}"),
               "timestamp": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                                       r"(?:\.[0-9]{1,6})?Z")}


def redact_event(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the event with sensitive fields and shapes redacted."""
    for key in list(event):
        id_format = _ID_FORMATS.get(key)
        if id_format is not None and isinstance(event[key], str) and id_format.fullmatch(
                event[key]):
            continue
        if key not in _OWN_FIELDS and is_sensitive_key(key):
            event[key] = REDACTED
        else:
            event[key] = redact_value(event[key])
    return event
