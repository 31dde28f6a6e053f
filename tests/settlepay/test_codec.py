"""settlepay/codec.py: AES-GCM payload encryption with key ids and rotation."""

from __future__ import annotations

import base64
import dataclasses
from typing import Annotated

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from settlepay import codec
from settlepay.codec import ENCODING, KEY_ID, CodecError, EncryptionCodec
from settlepay.config import Settings

OLD = base64.b64encode(b"o" * 32).decode()
NEW = base64.b64encode(b"n" * 32).decode()
PERSONAL = "Ada Lovelace"


@dataclasses.dataclass
class Applicant:
    first_name: str
    last_name: str
    date_of_birth: str
    ip_address: str


APPLICANT = Applicant("Ada", "Lovelace", "1815-12-10", "203.0.113.7")


def plain(text: str) -> Payload:
    return pydantic_data_converter.payload_converter.to_payloads([text])[0]


async def test_a_payload_round_trips_and_its_bytes_never_show_the_plaintext() -> None:
    sealed = await EncryptionCodec({"k1": NEW}).encode([plain(PERSONAL)])
    assert PERSONAL.encode() not in sealed[0].SerializeToString()
    assert await EncryptionCodec({"k1": NEW}).decode(sealed) == [plain(PERSONAL)]


async def test_the_last_key_encrypts_and_its_id_travels_in_the_metadata() -> None:
    sealed = (await EncryptionCodec({"old": OLD, "new": NEW}).encode([plain(PERSONAL)]))[0]
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"new"


async def test_every_configured_key_decrypts_so_keys_rotate_without_a_stop() -> None:
    under_old = await EncryptionCodec({"old": OLD}).encode([plain("before the rotation")])
    rotated = EncryptionCodec({"old": OLD, "new": NEW})
    under_new = await rotated.encode([plain("after the rotation")])
    assert await rotated.decode(under_old + under_new) == [
        plain("before the rotation"), plain("after the rotation")]
    # Step one of a rotation: the new key listed first only decrypts; the old one still encrypts.
    assert EncryptionCodec({"new": NEW, "old": OLD}).encrypting_key_id == "old"


async def test_a_payload_without_the_encrypted_encoding_passes_through_decode() -> None:
    recorded_before_the_codec = plain(PERSONAL)
    assert await EncryptionCodec({"k1": NEW}).decode([recorded_before_the_codec]) == [
        recorded_before_the_codec]


async def test_a_payload_under_an_unknown_key_id_is_an_error_not_plaintext() -> None:
    sealed = await EncryptionCodec({"gone": OLD}).encode([plain(PERSONAL)])
    with pytest.raises(CodecError, match="key id 'gone', which is not configured"):
        await EncryptionCodec({"k1": NEW}).decode(sealed)


async def test_a_tampered_payload_or_a_swapped_key_id_fails_authentication() -> None:
    sealed = (await EncryptionCodec({"a": NEW}).encode([plain(PERSONAL)]))[0]
    flipped = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + bytes(
        [sealed.data[-1] ^ 1]))
    with pytest.raises(CodecError, match="fails authentication"):
        await EncryptionCodec({"a": NEW}).decode([flipped])
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID: b"b"}, data=sealed.data)
    with pytest.raises(CodecError, match="fails authentication"):
        await EncryptionCodec({"a": NEW, "b": NEW}).decode([relabelled])


async def test_the_same_payload_encrypts_differently_each_time() -> None:
    one, two = await EncryptionCodec({"k1": NEW}).encode([plain(PERSONAL), plain(PERSONAL)])
    assert one.data != two.data


@pytest.mark.parametrize("keys, message", [
    ({}, "at least one key"),
    ({"k1": "not base64!"}, "is not base64"),
    ({"k1": base64.b64encode(b"short").decode()}, "is 5 bytes"),
    ({"": NEW}, "a key id is empty"),
])
def test_unusable_keys_are_refused_at_start(keys: dict[str, str], message: str) -> None:
    with pytest.raises(CodecError, match=message):
        EncryptionCodec(keys)


def test_the_development_key_is_an_aes_256_key() -> None:
    assert {k: len(v) for k, v in codec.parse_keys(Settings().payload_codec_keys).items()} == {
        "dev-1": 32}


async def test_the_data_converter_encrypts_values_and_failure_messages() -> None:
    converter = codec.data_converter(Settings(payload_codec_keys={"k1": NEW}))
    payloads = await converter.encode([APPLICANT])
    assert payloads[0].metadata["encoding"] == ENCODING
    for text in ("Lovelace", "1815-12-10", "203.0.113.7"):
        assert text.encode() not in payloads[0].SerializeToString()
    assert await converter.decode(payloads, [Applicant]) == [APPLICANT]

    failure = Failure()
    await converter.encode_failure(
        ApplicationError(f"sanctions match: {PERSONAL}", type="sanctions_match"), failure)
    assert PERSONAL.encode() not in failure.SerializeToString()
    assert failure.application_failure_info.type == "sanctions_match"
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError) and PERSONAL in decoded.message


def test_every_payload_converter_shares_the_processs_type_adapters() -> None:
    """The worker makes a payload converter per workflow run: the second run's converter
    reuses the first one's TypeAdapter, and converts exactly as pydantic's own converter."""
    converter = codec.data_converter(Settings())
    first, second = converter._new_payload_converter(), converter._new_payload_converter()
    assert first is not second
    [payload] = first.to_payloads([APPLICANT])
    assert payload == pydantic_data_converter.payload_converter.to_payloads([APPLICANT])[0]
    before = codec._type_adapter.cache_info()
    assert second.from_payloads([payload], [Applicant]) == [APPLICANT]
    assert first.from_payloads([payload], [Applicant]) == [APPLICANT]
    after = codec._type_adapter.cache_info()
    assert after.misses - before.misses <= 1 and after.hits - before.hits >= 1
    # Without a type hint, and with one pydantic cannot hash, as pydantic's converter answers.
    untyped = pydantic_data_converter.payload_converter.from_payloads([payload])
    assert first.from_payloads([payload]) == untyped == [dataclasses.asdict(APPLICANT)]
    [listed] = first.to_payloads([[1, 2]])
    unhashable = Annotated[list[int], []]   # its metadata, a list, makes the hint unhashable
    assert first.from_payloads([listed], [unhashable]) == [[1, 2]]
