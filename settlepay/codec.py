"""Encryption of Temporal payloads: no personal data reaches Temporal in the clear.

Workflow inputs and results, signals, updates, queries, activity arguments and results carry
names, dates of birth, IP addresses and amounts; failure messages may quote them. Every process
talks to Temporal through `data_converter(settings)` (settlepay/temporal.py, the tests'
environments): the pydantic payload converter, then `EncryptionCodec`, which encrypts each
payload with AES-GCM before it leaves the process and decrypts it on the way in; failure
messages and stack traces travel inside an encrypted payload too (encoded attributes).

An encrypted payload (the layout of Temporal's encryption sample, plus the key id as AAD):

    metadata  encoding = "binary/encrypted", encryption-key-id = <key id>
    data      12-byte random nonce || AES-GCM(serialized original Payload, aad = key id)

Keys: SETTLEPAY_PAYLOAD_CODEC_KEYS, a JSON object key id -> base64 key of 16, 24 or 32 bytes.
The LAST key listed encrypts; every key listed decrypts. Rotation without a stop: add the new
key FIRST in the object (decrypt only) on every process, then move it LAST (it encrypts from
then on); drop an old key only once no history within the namespace's retention needs it.

Payloads without the encrypted encoding pass through `decode` untouched, so histories recorded
before the codec still replay and show. Search attributes are not payloads of this codec: they
stay readable by the server (they are what the UI filters on), so they must never hold personal
data (PlayerId is an opaque id).

This module must never log or return a key, and never fall back to plaintext: a payload under
an unknown key id, or one that fails authentication, is an error.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    PayloadCodec,
)

from settlepay.config import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_SIZES = frozenset({16, 24, 32})


class CodecError(ValueError):
    """A payload the codec cannot decrypt, or a key configuration it cannot use."""


def parse_keys(keys: Mapping[str, str]) -> dict[str, bytes]:
    """Key id -> key bytes from the configured base64 strings; refuses unusable keys."""
    if not keys:
        raise CodecError("payload_codec_keys: at least one key is needed")
    parsed: dict[str, bytes] = {}
    for key_id, encoded in keys.items():
        if not key_id:
            raise CodecError("payload_codec_keys: a key id is empty")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise CodecError(f"payload_codec_keys[{key_id!r}] is not base64") from None
        if len(key) not in KEY_SIZES:
            raise CodecError(f"payload_codec_keys[{key_id!r}] is {len(key)} bytes;"
                             " AES-GCM takes 16, 24 or 32")
        parsed[key_id] = key
    return parsed


class EncryptionCodec(PayloadCodec):
    """AES-GCM over whole payloads; the last key encrypts, every key decrypts."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        parsed = parse_keys(keys)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in parsed.items()}
        self.encrypting_key_id = list(parsed)[-1]

    @classmethod
    def from_settings(cls, settings: Settings) -> EncryptionCodec:
        return cls(settings.payload_codec_keys)

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.encrypting_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(),
                                               key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()},
                       data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """The original payload; a payload that is not encrypted comes back as it is."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(f"payload encrypted under key id {key_id!r}, which is not"
                             f" configured (configured: {', '.join(self.key_ids)})")
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise CodecError(f"payload under key id {key_id!r} fails authentication"
                             " (tampered, or encrypted with another key of that id)") from None
        original = Payload()
        original.ParseFromString(plain)
        return original

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


# One pydantic TypeAdapter per type for the whole process. The worker makes a payload converter
# for every workflow run it starts, and pydantic's converter caches its adapters per converter:
# each deposit built the adapters of DepositRequest and Payment again (~0.7 and ~0.5 ms of CPU,
# more than the conversions themselves). The types that cross a workflow's boundary live in
# workflows/contracts, which the workflows import passed through the sandbox: the same class
# objects in every run, so each is built once. Bounded all the same (least recently used out).
_type_adapter = functools.lru_cache(maxsize=256)(TypeAdapter)


class _SharedAdaptersJSONConverter(PydanticJSONPlainPayloadConverter):
    """pydantic's JSON payload converter, with the process's TypeAdapters (`_type_adapter`)."""

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        try:
            adapter = _type_adapter(Any if type_hint is None else type_hint)
        except TypeError:   # an unhashable hint (or one pydantic refuses): pydantic's own path
            return super().from_payload(payload, type_hint)
        return adapter.validate_json(payload.data)


class PayloadConverter(CompositePayloadConverter):
    """pydantic's payload converter (temporalio.contrib.pydantic), its JSON converter sharing
    the process's TypeAdapters."""

    def __init__(self) -> None:
        json_converter = _SharedAdaptersJSONConverter()
        super().__init__(*(
            json_converter if isinstance(c, JSONPlainPayloadConverter) else c
            for c in DefaultPayloadConverter.default_encoding_payload_converters))


def data_converter(settings: Settings) -> DataConverter:
    """The converter of every Temporal client and worker: pydantic (`PayloadConverter`), then
    encryption; failure messages and stack traces encrypted with the rest."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=PayloadConverter,
        payload_codec=EncryptionCodec.from_settings(settings),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
