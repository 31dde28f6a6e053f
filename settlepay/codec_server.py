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

This server decrypts whatever it is sent: it must never be reachable without access control
outside development (it binds 127.0.0.1 unless told otherwise), and it never logs a payload.
"""

from __future__ import annotations

import argparse

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from settlepay.codec import CodecError, EncryptionCodec
from settlepay.config import Settings, get_settings

DEFAULT_HOST = "127.0.0.1"


def ui_origins(settings: Settings) -> list[str]:
    """The origins the Temporal UI is served from, as a browser names them."""
    host = settings.temporal_address.rpartition(":")[0] or "127.0.0.1"
    hosts = dict.fromkeys(["localhost", "127.0.0.1", host])
    return [f"http://{h}:{settings.temporal_ui_port}" for h in hosts]


def _problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "status": status, "code": code,
                         "detail": detail}, status_code=status,
                        media_type="application/problem+json")


def create_app(settings: Settings, codec: EncryptionCodec | None = None) -> Starlette:
    codec = codec or EncryptionCodec.from_settings(settings)

    async def transform(request: Request, encode: bool) -> Response:
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
    uvicorn.run(create_app(settings), host=args.host or DEFAULT_HOST,
                port=args.port or settings.codec_server_port,
                log_level=settings.log_level.lower(), access_log=False)
    return 0
