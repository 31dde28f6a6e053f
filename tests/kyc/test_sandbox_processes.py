"""The KYC and notification sandboxes run as `python -m sandboxes.<name> --port N`."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.support.net import free_port, wait_http


def test_sandboxes_start_as_modules_and_answer():
    for name in ("kyc", "notify"):
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", f"sandboxes.{name}", "--port", str(port)])
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=20)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"ok": True}
            if name == "notify":
                sent = httpx.post(f"http://127.0.0.1:{port}/v1/messages", headers={"Idempotency-Key": "k1"},
                                  json={"to": "a@example.test", "subject": "s", "body": "code 123456"})
                again = httpx.post(f"http://127.0.0.1:{port}/v1/messages", headers={"Idempotency-Key": "k1"},
                                   json={"to": "a@example.test", "subject": "s", "body": "code 123456"})
                assert sent.status_code == 201 and again.json()["id"] == sent.json()["id"]
                outbox = httpx.get(f"http://127.0.0.1:{port}/_sandbox/outbox").json()["data"]
                assert [m["body"] for m in outbox] == ["code 123456"]
            else:
                check = httpx.post(f"http://127.0.0.1:{port}/v1/checks", json={
                    "reference": "kyc-p:doc:1", "person": {}, "document": {"type": "passport", "number": "SILENT"}})
                assert check.status_code == 202 and check.json()["status"] == "pending"
        finally:
            process.terminate()
            process.wait(timeout=10)
