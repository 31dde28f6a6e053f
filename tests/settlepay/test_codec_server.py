"""settlepay/codec_server.py: Temporal's remote codec protocol over real HTTP, CORS for the UI,
and the bearer token it requires when SETTLEPAY_CODEC_SERVER_TOKEN is set."""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter

from settlepay import codec_server
from settlepay.codec import EncryptionCodec
from settlepay.codec_server import create_app, is_loopback
from settlepay.config import Settings, get_settings
from tests.support.net import free_port
from tests.support.servers import serve_asgi

SETTINGS = Settings(payload_codec_keys={"k1": base64.b64encode(b"k" * 32).decode()},
                    temporal_ui_port=8233)
UI_ORIGIN = "http://localhost:8233"
NAMESPACE = {"X-Namespace": "default", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_asgi(create_app(SETTINGS)) as url:
        yield url


def body(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def payloads_of(answer: httpx.Response) -> list[Payload]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    return list(json_format.Parse(answer.text, Payloads()).payloads)


def test_encode_then_decode_round_trips_a_payload_as_the_ui_sends_it(server: str) -> None:
    original = pydantic_data_converter.payload_converter.to_payloads(
        [{"first_name": "Ada", "date_of_birth": "1815-12-10"}])[0]
    encoded = payloads_of(httpx.post(f"{server}/encode", content=body(original),
                                     headers=NAMESPACE))
    assert encoded[0].metadata["encoding"] == b"binary/encrypted"
    assert b"Ada" not in encoded[0].data
    decoded = payloads_of(httpx.post(f"{server}/decode", content=body(*encoded),
                                     headers=NAMESPACE))
    assert decoded == [original]
    assert json.loads(decoded[0].data) == {"first_name": "Ada", "date_of_birth": "1815-12-10"}


async def test_decode_opens_what_a_worker_encrypted_and_passes_plain_payloads(
        server: str) -> None:
    plain = pydantic_data_converter.payload_converter.to_payloads(["203.0.113.7"])[0]
    sealed = await EncryptionCodec.from_settings(SETTINGS).encode([plain])
    decoded = payloads_of(httpx.post(f"{server}/decode", content=body(sealed[0], plain),
                                     headers=NAMESPACE))
    assert decoded == [plain, plain]


def test_the_temporal_ui_origin_may_call_it_from_the_browser(server: str) -> None:
    preflight = httpx.options(f"{server}/decode", headers={
        "Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
    assert "x-namespace" in preflight.headers["access-control-allow-headers"].lower()
    answer = httpx.post(f"{server}/decode", content=body(), headers={**NAMESPACE,
                                                                      "Origin": UI_ORIGIN})
    assert answer.headers["access-control-allow-origin"] == UI_ORIGIN


def test_another_origin_is_not_allowed(server: str) -> None:
    preflight = httpx.options(f"{server}/decode", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace"})
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    answer = httpx.post(f"{server}/decode", content=body(), headers={
        **NAMESPACE, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_a_body_that_is_not_payloads_is_a_400_problem(server: str) -> None:
    answer = httpx.post(f"{server}/decode", content="{not json", headers=NAMESPACE)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "invalid_payloads"


async def test_a_payload_under_an_unknown_key_is_a_422_problem_not_plaintext(
        server: str) -> None:
    other = EncryptionCodec({"other": base64.b64encode(b"o" * 32).decode()})
    sealed = await other.encode(
        pydantic_data_converter.payload_converter.to_payloads(["Ada Lovelace"]))
    answer = httpx.post(f"{server}/decode", content=body(*sealed), headers=NAMESPACE)
    assert answer.status_code == 422
    assert answer.json()["code"] == "undecryptable_payload"
    assert "Ada" not in answer.text


# --- the token (SETTLEPAY_CODEC_SERVER_TOKEN) ---------------------------------------------------

TOKEN = "codec-token-3f9a1c"
GUARDED = SETTINGS.model_copy(update={"codec_server_token": TOKEN})


@pytest.fixture(scope="module")
def guarded() -> Iterator[str]:
    with serve_asgi(create_app(GUARDED)) as url:
        yield url


def sealed_body() -> str:
    plain = pydantic_data_converter.payload_converter.to_payloads(["Ada Lovelace"])[0]
    return body(plain)


@pytest.mark.parametrize(("authorization", "code"), [
    (None, "codec_token_missing"),
    ("Bearer", "codec_token_missing"),
    (f"Basic {TOKEN}", "codec_token_missing"),
    ("Bearer codec-token-3f9a1d", "codec_token_invalid"),
    (f"Bearer {TOKEN}x", "codec_token_invalid"),
])
def test_with_a_token_set_a_call_without_it_is_a_401_problem(
        guarded: str, authorization: str | None, code: str) -> None:
    headers = {**NAMESPACE, "Origin": UI_ORIGIN}
    if authorization is not None:
        headers["Authorization"] = authorization
    for path in ("/encode", "/decode"):
        answer = httpx.post(f"{guarded}{path}", content=sealed_body(), headers=headers)
        assert answer.status_code == 401
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"].startswith("Bearer ")
        assert answer.json()["code"] == code
        assert TOKEN not in answer.text and "Ada" not in answer.text
        assert "payloads" not in answer.json()
        # The UI's origin may read the refusal (and show it to the operator).
        assert answer.headers["access-control-allow-origin"] == UI_ORIGIN


def test_with_the_token_the_ui_decodes_and_the_preflight_needs_none(guarded: str) -> None:
    preflight = httpx.options(f"{guarded}/decode", headers={
        "Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert preflight.headers["access-control-allow-credentials"] == "true"
    headers = {**NAMESPACE, "Origin": UI_ORIGIN, "Authorization": f"Bearer {TOKEN}"}
    original = pydantic_data_converter.payload_converter.to_payloads(["Ada Lovelace"])[0]
    encoded = payloads_of(httpx.post(f"{guarded}/encode", content=body(original),
                                     headers=headers))
    assert b"Ada" not in encoded[0].data
    decoded = payloads_of(httpx.post(f"{guarded}/decode", content=body(*encoded),
                                     headers={**headers, "Authorization": f"bearer {TOKEN}"}))
    assert decoded == [original]


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("::1", True), ("localhost", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("codec.internal", False)])
def test_loopback_is_told_apart(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_server_refuses_to_bind_beyond_loopback_without_a_token(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 before anything listens (a real bind on the loopback is `make dev`'s test)."""
    monkeypatch.delenv("SETTLEPAY_CODEC_SERVER_TOKEN", raising=False)
    get_settings.cache_clear()
    try:
        assert codec_server.main(argparse.Namespace(host="0.0.0.0", port=free_port())) == 2
    finally:
        get_settings.cache_clear()
    assert "SETTLEPAY_CODEC_SERVER_TOKEN" in capsys.readouterr().err
