"""`settlepay codec-server`: Temporal's remote codec protocol, so that Temporal UI shows an
operator the decrypted payloads (settlepay/codec.py) while the server only ever stores them
encrypted.

    POST /decode   {"payloads": [...]}  ->  {"payloads": [...]}   (UI: show a history)
    POST /encode   {"payloads": [...]}  ->  {"payloads": [...]}   (UI: signal, start, ...)

Bodies are `temporal.api.common.v1.Payloads` in protobuf JSON (base64 metadata values and
data), as the UI and `temporal` CLI send them, with the namespace in `X-Namespace`. CORS lets
the Temporal UI's origin (http://localhost:<ui port>, http://127.0.0.1:<ui port>) call it from
the operator's browser, preflight included. `make dev` starts it and starts the Temporal dev
server with `--ui-codec-endpoint` pointing here.

This server decrypts whatever it is sent, so it requires `Authorization: Bearer <token>`
matching SETTLEPAY_CODEC_SERVER_TOKEN (compared in constant time; 401 problem+json otherwise,
CORS preflight still answered) whenever the token is set, and it refuses to bind anything but
loopback without one. `make dev` binds 127.0.0.1 and sets none. Senders of the token: the
`temporal` CLI (`--codec-auth "Bearer <token>"`), or an authenticating proxy in front of it.
Temporal UI with `TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true` forwards the operator's own access
token (its OIDC login's, short-lived), so the UI reaches a token-protected codec server only
through such a proxy, which adds the shared token (docker-compose.yml: `codec-proxy`). It
never logs a payload or the token.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import sys

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from settlepay.cli_commands import USAGE
from settlepay.codec import CodecError, EncryptionCodec
from settlepay.config import Settings, get_settings

DEFAULT_HOST = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """Only this machine can reach `host` (an address or "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: whoever it resolves for


def ui_origins(settings: Settings) -> list[str]:
    """The origins the Temporal UI is served from, as a browser names them."""
    host = settings.temporal_address.rpartition(":")[0] or "127.0.0.1"
    hosts = dict.fromkeys(["localhost", "127.0.0.1", host])
    return [f"http://{h}:{settings.temporal_ui_port}" for h in hosts]


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "status": status, "code": code,
                         "detail": detail}, status_code=status,
                        media_type="application/problem+json")


def _refused(request: Request, token: bytes) -> JSONResponse | None:
    """None when the request bears `Authorization: Bearer <token>` (compared in constant
    time); else the 401 problem. Neither the token nor what was presented is echoed."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() == "bearer" and presented:
        if hmac.compare_digest(presented.encode("utf-8"), token):
            return None
        code, detail = "codec_token_invalid", "The bearer token is not the codec server's."
    else:
        code, detail = "codec_token_missing", ("Send the codec server's token as "
                                               "`Authorization: Bearer <token>`.")
    response = _problem(401, code, detail)
    response.headers["WWW-Authenticate"] = 'Bearer realm="settlepay-codec"'
    return response


def create_app(settings: Settings, codec: EncryptionCodec | None = None) -> Starlette:
    """The codec app; with settings.codec_server_token set, every call must present it."""
    codec = codec or EncryptionCodec.from_settings(settings)
    token = settings.codec_server_token.encode("utf-8")

    async def transform(request: Request, encode: bool) -> Response:
        refused = _refused(request, token) if token else None
        if refused is not None:
            return refused
        try:
            payloads = json_format.Parse(await request.body(), Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as error:
            return _problem(400, "invalid_payloads",
                            f"the body is not temporal.api.common.v1.Payloads JSON: {error}")
        try:
            done = (await codec.encode(payloads.payloads) if encode
                    else await codec.decode(payloads.payloads))
        except CodecError as error:
            return _problem(422, "undecryptable_payload", str(error))
        body = json_format.MessageToJson(Payloads(payloads=done))
        return Response(body, media_type="application/json")

    async def encode(request: Request) -> Response:
        return await transform(request, encode=True)

    async def decode(request: Request) -> Response:
        return await transform(request, encode=False)

    return Starlette(
        routes=[Route("/encode", encode, methods=["POST"]),
                Route("/decode", decode, methods=["POST"])],
        middleware=[Middleware(CORSMiddleware, allow_origins=ui_origins(settings),
                               allow_methods=["POST"], allow_credentials=True,
                               allow_headers=["Content-Type", "X-Namespace", "Authorization"])],
    )


def main(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    host = args.host or DEFAULT_HOST
    if not settings.codec_server_token and not is_loopback(host):
        print(f"settlepay codec-server: refusing to bind {host} without a token: set "
              "SETTLEPAY_CODEC_SERVER_TOKEN (callers send `Authorization: Bearer <token>`)",
              file=sys.stderr)
        return USAGE
    uvicorn.run(create_app(settings), host=host,
                port=args.port or settings.codec_server_port,
                log_level=settings.log_level.lower(), access_log=False)
    return 0
