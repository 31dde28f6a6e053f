"""How the Stripe adapter talks HTTP: the environment's proxies are read once, when the gateway
is made (not per call), and single objects come back through the SDK's raw request path with
the SDK's refusals."""

from __future__ import annotations

import uuid

import pytest
import requests.utils
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.gateway import GatewayUnavailable
from adapters.gateway.stripe_gateway import StripeGateway
from tests.support.net import free_port
from tests.support.servers import serve_asgi
from tests.support.stripe_servers import API_KEY


def _gateway(url: str) -> StripeGateway:
    return StripeGateway(api_key=API_KEY, api_base=url, timeout_seconds=2.0)


def _create(gateway: StripeGateway):
    return gateway.create_payment_intent(amount=1000, currency="USD",
                                         payment_method="pm_card_visa",
                                         idempotency_key=f"http-{uuid.uuid4().hex}:create")


def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                 "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_a_proxy_in_the_environment_is_used(sandbox, monkeypatch):
    _no_proxy_variables(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")   # nothing listens
    with pytest.raises(GatewayUnavailable):
        _create(_gateway(sandbox.base_url))


def test_no_proxy_in_the_environment_is_honoured(sandbox, monkeypatch):
    _no_proxy_variables(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert _create(_gateway(sandbox.base_url)).status == "succeeded"


def test_the_environment_is_read_when_the_gateway_is_made_not_per_call(sandbox, monkeypatch):
    _no_proxy_variables(monkeypatch)
    gateway = _gateway(sandbox.base_url)
    # A proxy set afterwards is not looked up: requests' per-call environment look-up is off.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")

    def looked_up(*args, **kwargs):
        raise AssertionError("the environment was read during a call")

    monkeypatch.setattr(requests.utils, "get_environ_proxies", looked_up)
    monkeypatch.setattr(requests.utils, "get_netrc_auth", looked_up)
    monkeypatch.setattr("requests.sessions.get_environ_proxies", looked_up)
    monkeypatch.setattr("requests.sessions.get_netrc_auth", looked_up)
    assert _create(gateway).status == "succeeded"
    assert gateway.retrieve_payment_intent(_create(gateway).id).status == "succeeded"


def test_an_answer_that_is_not_an_object_is_unavailable():
    async def listing(request):
        return JSONResponse([{"id": "pi_1"}])

    app = Starlette(routes=[Route("/v1/payment_intents/{id}", listing)])
    with serve_asgi(app) as url, pytest.raises(GatewayUnavailable) as caught:
        _gateway(url).retrieve_payment_intent("pi_1")
    assert caught.value.http_status == 200


def test_parameters_named_like_request_options_are_refused(sandbox):
    with pytest.raises(ValueError, match="headers"):
        _gateway(sandbox.base_url)._request("post", "/v1/payment_intents", {"headers": "x"})


def test_ids_in_paths_are_quoted():
    # An id cannot reach another endpoint: quoted as the SDK's services quote it.
    seen: list[bytes] = []

    async def anything(request):
        seen.append(request.scope["raw_path"])
        return JSONResponse({"id": "pi_x", "status": "succeeded", "amount": 1,
                             "currency": "usd"})

    app = Starlette(routes=[Route("/{rest:path}", anything)])
    with serve_asgi(app) as url:
        assert _gateway(url).retrieve_payment_intent("pi_x/cancel?a=b c").id == "pi_x"
    assert seen == [b"/v1/payment_intents/pi_x%2Fcancel%3Fa%3Db+c"]
