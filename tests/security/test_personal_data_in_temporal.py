"""No plaintext personal data in Temporal: histories read straight from the server, by a client
WITHOUT the payload codec, hold no name, date of birth, e-mail, IP address or document number
(settlepay/codec.py encrypts every payload; the operator reads them through the codec server).

Each test also decrypts the same history with the codec and finds the personal data there, so
the raw check cannot pass only because the data never reached Temporal."""

from __future__ import annotations

import uuid
from datetime import date

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory

from settlepay.codec import ENCODING, EncryptionCodec
from tests.support.deposits import deposit_body, wait_for_status
from tests.support.factories import make_player
from tests.support.kyc import submit, wait_kyc
from tests.support.stack import Stack

DATE_OF_BIRTH = date(1971, 3, 14)
IP_ADDRESS = "198.51.100.23"
LOCATED_IP = "203.0.113.7"      # where make_player's geolocation check found the player


async def raw_history(stack: Stack, workflow_id: str) -> WorkflowHistory:
    """The history as the server stores it: a client with Temporal's default converter."""
    plain = await Client.connect(stack.client.service_client.config.target_host,
                                 namespace=stack.client.namespace)
    return await plain.get_workflow_handle(workflow_id).fetch_history()


# Payloads the SDK never hands to the codec: search attributes (the server indexes them; they
# hold ids, states and amounts, never personal data), headers (the tracing context) and the
# markers of `workflow.patched` (a patch id). The raw scan covers them too.
NOT_ENCODED = frozenset({"search_attributes", "header", "marker_recorded_event_attributes"})


def payloads(message: Message) -> list[Payload]:
    """Every Payload the codec encodes inside a protobuf message, however deeply nested."""
    if isinstance(message, Payload):
        return [message]
    found: list[Payload] = []
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None or descriptor.name in NOT_ENCODED:
            continue
        items = ([value] if isinstance(value, Message)
                 else list(value.values()) if hasattr(value, "values") else list(value))
        for item in items:
            if isinstance(item, Message):
                found += payloads(item)
    return found


def raw_bytes(events: list[HistoryEvent]) -> bytes:
    return b"".join(event.SerializeToString() for event in events)


async def decrypted_text(stack: Stack, events: list[HistoryEvent]) -> str:
    codec = EncryptionCodec.from_settings(stack.settings)
    found = [p for event in events for p in payloads(event)]
    return b"".join(p.data for p in await codec.decode(found)).decode(errors="replace")


def leaked(raw: bytes, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret.encode() in raw]


async def test_a_kyc_history_read_without_the_codec_holds_no_personal_data(
        stack: Stack, worker, http) -> None:
    # A near match of a listed name goes to an operator, whose note quotes the player.
    player = make_player(stack.engine, first_name="Viktor", last_name="Aleksandrovich Blackwod",
                         date_of_birth=DATE_OF_BIRTH)
    document = f"P{uuid.uuid4().int % 10**8:08d}"
    assert (await submit(http, player, number=document)).status_code == 202
    await wait_kyc(http, player, ("review",))
    note = (f"called {player.email} from {IP_ADDRESS}: Viktor Aleksandrovich Blackwod,"
            f" born {DATE_OF_BIRTH.isoformat()}, is not the listed person")
    review = await http.post(f"/v1/kyc/{player.id}/review", headers=player.operator,
                             json={"decision": "approve", "note": note})
    assert review.status_code == 202, review.text
    assert (await wait_kyc(http, player, ("verified",)))["status"] == "verified"

    history = await raw_history(stack, f"kyc-{player.id}")
    personal = ["Blackwo", DATE_OF_BIRTH.isoformat(), player.email, IP_ADDRESS, document]
    assert leaked(raw_bytes(history.events), personal) == []
    sealed = [p for event in history.events for p in payloads(event)]
    assert sealed and [p for p in sealed if p.metadata["encoding"] != ENCODING] == []
    assert leaked((await decrypted_text(stack, history.events)).encode(), personal) == personal


async def test_a_deposit_history_read_without_the_codec_holds_no_ip_address(
        stack: Stack, worker, http) -> None:
    player = make_player(stack.engine)
    started = await http.post("/v1/deposits", json={**deposit_body(player),
                                                    "ip_address": LOCATED_IP},
                              headers={**player.headers, "Idempotency-Key": uuid.uuid4().hex})
    assert started.status_code == 202, started.text
    deposit = await wait_for_status(http, player, started.json()["id"])
    assert deposit["status"] == "succeeded", deposit

    history = await raw_history(stack, f"deposit-{deposit['id']}")
    assert leaked(raw_bytes(history.events), [LOCATED_IP, player.email]) == []
    assert LOCATED_IP in await decrypted_text(stack, history.events)
