"""One HTTP attempt against the receiver sandbox on loopback: redirects, timeouts, bodies,
and the address pinned by the SSRF guard (names answered by a fake resolver)."""

from __future__ import annotations

import uuid

from webhooks.sender import Sender
from webhooks.ssrf import Guard

LOOPBACK = ["127.0.0.1/32"]


def name() -> str:
    return uuid.uuid4().hex[:12]


class Resolver:
    def __init__(self, *answers: list[str]) -> None:
        self.answers, self.calls = list(answers), 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return self.answers[min(self.calls, len(self.answers)) - 1]


async def test_a_redirect_is_a_failure_and_is_never_followed(receiver):
    hook, elsewhere = name(), name()
    receiver.configure(hook, status=302, headers={"Location": receiver.hook(elsewhere)})
    sender = Sender(Guard(LOOPBACK), timeout_seconds=5)
    answer = await sender.send(receiver.hook(hook), {"webhook-id": "evt_r"}, b"{}")
    await sender.aclose()
    assert answer.status_code == 302
    assert "redirect not followed" in answer.error and elsewhere in answer.error
    assert len(receiver.deliveries(hook)) == 1 and receiver.deliveries(elsewhere) == []


async def test_a_receiver_slower_than_the_timeout_is_an_answer_without_status(receiver):
    hook = name()
    receiver.configure(hook, latency_seconds=30)
    sender = Sender(Guard(LOOPBACK), timeout_seconds=0.3)
    answer = await sender.send(receiver.hook(hook), {}, b"{}")
    await sender.aclose()
    receiver.release()
    assert answer.status_code is None and answer.error == "timed out after 0.3 s"
    assert 250 <= answer.duration_ms < 5000


async def test_only_the_first_20_kB_of_a_response_body_are_kept(receiver):
    hook = name()
    receiver.configure(hook, status=500, body="x" * 50_000)
    sender = Sender(Guard(LOOPBACK), timeout_seconds=5)
    answer = await sender.send(receiver.hook(hook), {}, b"{}")
    await sender.aclose()
    assert answer.status_code == 500 and len(answer.body) == 20 * 1024


async def test_a_connection_refused_is_an_answer_with_the_reason(receiver):
    from tests.support.net import free_port

    sender = Sender(Guard(LOOPBACK), timeout_seconds=5)
    answer = await sender.send(f"http://127.0.0.1:{free_port()}/nobody", {}, b"{}")
    await sender.aclose()
    assert answer.status_code is None and answer.error.startswith("ConnectError")


async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(receiver):
    # The name resolves once; a second, rebinding answer (a private address) is never asked.
    hook = name()
    port = int(receiver.base_url.rsplit(":", 1)[1])
    resolver = Resolver(["127.0.0.1"], ["10.0.0.9"])
    sender = Sender(Guard(LOOPBACK, resolver), timeout_seconds=5)
    answer = await sender.send(f"http://hooks.partner.test:{port}/hooks/{hook}", {}, b"{}")
    await sender.aclose()
    assert answer.status_code == 200 and resolver.calls == 1
    [delivery] = receiver.deliveries(hook)
    assert delivery["host"] == f"hooks.partner.test:{port}"


async def test_a_name_resolving_to_a_private_address_is_refused_before_any_connection():
    resolver = Resolver(["10.0.0.7"])
    sender = Sender(Guard(LOOPBACK, resolver), timeout_seconds=5)
    answer = await sender.send("https://rebind.partner.test/hook", {}, b"{}")
    await sender.aclose()
    assert answer.status_code is None
    assert answer.error == ("address refused: rebind.partner.test resolves to 10.0.0.7: "
                            "10.0.0.7 is a private address")
