"""The redaction every log event goes through (settlepay/observability/redaction.py)."""

from __future__ import annotations

from datetime import UTC

from hypothesis import given, settings
from hypothesis import strategies as st

from settlepay.observability import redaction
from settlepay.observability.redaction import (
    REDACTED,
    _full_scan,
    redact_event,
    redact_text,
)


def test_card_numbers_are_masked_when_they_pass_the_luhn_check():
    assert redact_text("card 4242424242424242 declined") == "card [CARD] declined"
    assert redact_text("pan=4000 0000 0000 0002") == "pan=[CARD]"
    # Ids and amounts that are no card number stay readable.
    assert redact_text("amount 1234567890123 id 1796509893") == \
        "amount 1234567890123 id 1796509893"


def test_keys_secrets_and_tokens_are_masked():
    text = ("Bearer sp_test_partner_abcdefghijklmnop key sk_test_settlepay_sandbox "
            "whsec_c2VjcmV0 pi_123abc_secret_456def gAAAAABlZxYz0123456789abcdefghij "
            "JBSWY3DPEHPK3PXP")
    redacted = redact_text(text)
    for secret in ("abcdefghijklmnop", "settlepay_sandbox", "c2VjcmV0", "456def",
                   "gAAAAABlZxYz", "JBSWY3DPEHPK3PXP"):
        assert secret not in redacted, redacted


def test_one_time_codes_next_to_their_word_and_email_addresses_are_masked():
    assert "123456" not in redact_text("wrong code 123456")
    assert "654321" not in redact_text("{'code': '654321'}")
    assert redact_text("sent to ada@example.test") == "sent to [EMAIL]"
    # A bare number is not a code: amounts stay.
    assert redact_text("amount 500000") == "amount 500000"


def test_sql_parameters_in_error_texts_are_masked():
    text = ("(psycopg.errors.UniqueViolation) duplicate key\n"
            "DETAIL:  Key (email)=(ada@example.test) already exists.\n"
            "[SQL: INSERT INTO players (first_name) VALUES (%(first_name)s)]\n"
            "[parameters: {'first_name': 'Ada', 'last_name': 'Lovelace'}]\n"
            "(Background on this error at: https://sqlalche.me/e/20/gkpj)")
    redacted = redact_text(text)
    assert "Lovelace" not in redacted and "ada@example.test" not in redacted
    assert "[SQL: INSERT INTO players" in redacted


def test_sensitive_fields_are_masked_by_name_at_any_depth():
    event = redact_event(None, "info", {
        "event": "player created", "first_name": "Ada", "player_id": "ply_1",
        "payload": {"email": "ada@example.test", "last_name": "Lovelace",
                    "document": {"number": "P1234567"}, "amount": 500},
        "code": "123456", "Idempotency-Key": "k-1"})
    assert event["first_name"] == event["code"] == event["Idempotency-Key"] == REDACTED
    assert event["payload"]["email"] == event["payload"]["last_name"] == REDACTED
    assert event["payload"]["document"] == REDACTED
    assert event["player_id"] == "ply_1" and event["payload"]["amount"] == 500
    assert event["event"] == "player created"


@given(st.text(alphabet="0123456789abcdef", min_size=1, max_size=40).filter(
    lambda text: any(c in "abcdef" for c in text)))
@settings(max_examples=2000)
def test_a_hex_id_with_a_letter_is_left_as_the_full_scan_leaves_it(text):
    # Trace and span ids, uuid4().hex request ids skip the scan: it would change nothing.
    assert redact_text(text) == _full_scan(text) == text


@given(st.text(alphabet="0123456789abcdefABCDEF_- @.:'=\n", max_size=40))
@settings(max_examples=2000)
def test_any_other_text_is_scanned_as_before(text):
    assert redact_text(text) == _full_scan(text)


# Pieces of every shape (and near misses: case-folded letters, separators, short runs), so
# that generated texts often hold a whole or a part of one.
_PIECES = ["sp_", "sp_live_", "sk_", "rk_", "_test_", "_live_", "whsec_", "pi_", "seti_",
           "_secret_", "Bearer ", "BASIC\t", "baſic ", "gAAAAA", "ABCDEFGHIJKLMNOP", "Q2345",
           "code", "OTP", "toTp", "passcode", "PIN", "ṗin", "=", ": ", "'", '"', "@", "x.io",
           "[parameters: ", "]", "(", "\n", "DETAIL:  Key (", ")=(", "4242", "4242 4242",
           "4242-4242-4242-4242", "0", "1", "7", "9", " ", "-", "_", ".", "a", "Z", "é", "٣",
           "４"]


@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=3), max_size=12).map("".join))
@settings(max_examples=5000)
def test_a_text_is_redacted_as_the_full_scan_redacts_it(text):
    assert redact_text(text) == _full_scan(text)


@given(st.text(max_size=60))
@settings(max_examples=3000)
def test_any_unicode_text_is_redacted_as_the_full_scan_redacts_it(text):
    assert redact_text(text) == _full_scan(text)


def test_texts_with_no_shape_are_not_scanned(monkeypatch):
    scanned: list[str] = []
    monkeypatch.setattr(redaction, "_full_scan", lambda text: scanned.append(text) or text)
    for text in ("request", "POST", "/v1/deposits", "settlepay.api.requests",
                 "2026-12-06T14:31:37.607239Z", "info", "problem answered"):
        assert redact_text(text) == text
    assert scanned == []
    assert redact_text("mail ada@example.com") == "mail ada@example.com"   # (patched)
    assert scanned == ["mail ada@example.com"]


def test_ids_of_digits_only_are_still_scanned(monkeypatch):
    # No letter: a 16-digit text that passes the Luhn check reads as a card.
    assert redact_text("4242424242424242") == "[CARD]"
    assert redact_text("4242424242424242a") == "4242424242424242a"
    scanned: list[str] = []
    monkeypatch.setattr(redaction, "_scan", lambda text: scanned.append(text) or text)
    redact_event(None, "info", {"event": "request", "trace_id": "0af7651916cd43dd8448eb211c80319c",
                                "span_id": "b7ad6b7169203331", "request_id": "12345"})
    assert scanned == ["request", "12345"]   # the two ids with a letter are not scanned


def test_the_pipelines_own_trace_and_span_ids_are_kept_even_when_all_digits():
    # A span id of 16 decimal digits passing the Luhn check is still the line's span id.
    event = redact_event(None, "info", {"event": "request",
                                        "trace_id": "42424242424242424242424242424242",
                                        "span_id": "4242424242424242",
                                        "note": "4242424242424242"})
    assert (event["trace_id"], event["span_id"]) == (
        "42424242424242424242424242424242", "4242424242424242")
    assert event["note"] == "[CARD]"
    # Not in the pipeline's form (length, case, anything around it): scanned as any value.
    assert redact_event(None, "info", {"span_id": "card 4242424242424242"})["span_id"] == \
        "card [CARD]"
    assert redact_event(None, "info", {"trace_id": "4242424242424242"})["trace_id"] == "[CARD]"


@given(st.datetimes(timezones=st.just(UTC)))
@settings(max_examples=1000)
def test_the_pipelines_timestamp_is_kept_as_the_full_scan_keeps_it(moment):
    stamped = moment.isoformat().replace("+00:00", "Z")   # structlog's TimeStamper(iso, utc)
    assert _full_scan(stamped) == stamped
    assert redact_event(None, "info", {"timestamp": stamped})["timestamp"] == stamped
    # Anything else in that field is scanned as any value.
    assert redact_event(None, "info", {"timestamp": f"{stamped} ada@x.io"})["timestamp"] == \
        f"{stamped} [EMAIL]"
