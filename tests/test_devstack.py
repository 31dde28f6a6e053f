"""`settlepay dev` end to end: the stack comes up, answers, stops cleanly, and resumes its data.

Runs the real command as a subprocess on free ports with its own data folder and database:
run 1 creates a player through the API with the printed development key, deposits money through
the whole stack (API -> Temporal -> worker -> Stripe sandbox -> signed webhook -> ledger) and
starts a Temporal workflow tagged with the player's id that stays running; Ctrl-C (SIGINT) must
stop every child and exit 0; run 2 on the same data folder must still have the player, the
balance and the running workflow.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from settlepay import search_attributes, task_queues
from settlepay.config import Settings
from settlepay.temporal import connect
from tests.support.databases import temporary_database
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parent.parent
UP = "settlepay dev stack is up"
STARTED = re.compile(r"started (\S+) \(pid (\d+)\)")


class Stack:
    """One `settlepay dev` process; its output goes to a file the test reads."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.out = open(log, "w")
        # A session of its own: the test's SIGINT goes to `settlepay dev` only, as a terminal
        # Ctrl-C would (its children are in their own process groups anyway).
        self.process = subprocess.Popen([sys.executable, "-m", "settlepay.cli", "dev"], cwd=ROOT,
                                        env=env, stdout=self.out, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    # The whole stack, the API's processes last (SETTLEPAY_API_PROCESSES, each importing the
    # app): on a loaded 2-core machine that takes over a minute.
    def wait_up(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while UP not in self.text():
            if self.process.poll() is not None:
                pytest.fail(f"settlepay dev exited with {self.process.returncode}:\n"
                            f"{self.text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"settlepay dev not up within {timeout} s:\n{self.text()[-4000:]}")
            time.sleep(0.2)
        return self.text()

    def children(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in STARTED.findall(self.text())}

    def interrupt(self, timeout: float = 45.0) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        finally:
            self.out.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for pid in self.children().values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped; /proc tells them apart.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_ready(url: str, timeout: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(url, timeout=5.0)
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.3)


def base_env(tmp_path: Path) -> tuple[dict[str, str], dict[str, int]]:
    """The environment of a stack on free ports with its own data folder (no database yet)."""
    ports = {name: free_port()
             for name in ("temporal", "ui", "api", "stripe", "kyc", "notify", "codec")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLEPAY_")}
    env.pop("DATABASE_URL", None)
    env.update({
        "SETTLEPAY_DATA_DIR": str(tmp_path / "data"),
        "SETTLEPAY_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "SETTLEPAY_TEMPORAL_UI_PORT": str(ports["ui"]),
        "SETTLEPAY_API_PORT": str(ports["api"]),
        "SETTLEPAY_SANDBOX_STRIPE_PORT": str(ports["stripe"]),
        "SETTLEPAY_SANDBOX_KYC_PORT": str(ports["kyc"]),
        "SETTLEPAY_SANDBOX_NOTIFY_PORT": str(ports["notify"]),
        "SETTLEPAY_CODEC_SERVER_PORT": str(ports["codec"]),
        "SETTLEPAY_DEV_API_KEY": "sp_devtest_" + uuid.uuid4().hex + uuid.uuid4().hex,
        # The PostgreSQL server is shared with other test sessions: small pools.
        "SETTLEPAY_API_DB_POOL_SIZE": "2",
        "SETTLEPAY_WORKER_DB_POOL_SIZE": "2",
        "SETTLEPAY_WORKER_ACTIVITY_THREADS": "4",
    })
    return env, ports


@pytest.fixture
def stack_env(tmp_path: Path):
    env, ports = base_env(tmp_path)
    with temporary_database("sp_devstack") as database_url:
        env["SETTLEPAY_DATABASE_URL"] = database_url
        yield env, ports, tmp_path


async def start_tagged_workflow(address: str, workflow_id: str, player_id: str) -> None:
    # No worker runs this type: the workflow simply stays Running, which is all the restart needs.
    client = await connect(Settings(temporal_address=address))
    await client.start_workflow(
        "DevStackProbe", id=workflow_id, task_queue=task_queues.MAIN + "-devstack-probe",
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(search_attributes.PLAYER_ID, player_id)]))


async def temporal_state(address: str, workflow_id: str, player_id: str,
                         expected: set[str]) -> tuple[int, set[str], set[str]]:
    client = await connect(Settings(temporal_address=address))
    description = await client.get_workflow_handle(workflow_id).describe()
    registered = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace))
    found: set[str] = set()
    for _ in range(50):  # visibility is eventually consistent
        found = {wf.id async for wf in client.list_workflows(f"PlayerId = '{player_id}'")}
        if found >= expected:
            break
        await asyncio.sleep(0.1)
    status = description.raw_description.workflow_execution_info.status
    return status, found, set(registered.custom_attributes)


def check_up(text: str, ports: dict[str, int], dev_key: str) -> tuple[str, dict[str, str]]:
    api = f"http://127.0.0.1:{ports['api']}"
    assert f"{api}/docs" in text
    assert f"http://127.0.0.1:{ports['ui']}" in text
    printed_key = re.search(r"Development API key: (\S+)", text).group(1)
    assert printed_key == dev_key
    assert httpx.get(f"{api}/healthz", timeout=5).status_code == 200
    ready = wait_ready(f"{api}/readyz")
    assert ready.status_code == 200, ready.text
    assert httpx.get(f"{api}/docs", timeout=5).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=5).status_code == 200
    # Temporal UI decrypts payloads through the codec server the stack started.
    codec = f"http://127.0.0.1:{ports['codec']}"
    ui = httpx.get(f"http://127.0.0.1:{ports['ui']}/api/v1/settings", timeout=5).json()
    assert ui["Codec"]["Endpoint"] == codec
    decoded = httpx.post(f"{codec}/decode", json={"payloads": []}, timeout=5,
                         headers={"X-Namespace": "default",
                                  "Origin": f"http://localhost:{ports['ui']}"})
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["access-control-allow-origin"] == f"http://localhost:{ports['ui']}"
    return api, {"Authorization": f"Bearer {printed_key}"}


def deposit_through_the_stack(api: str, auth: dict[str, str], player_id: str) -> dict:
    """A $50.00 card deposit from inside New Jersey, followed until the workflow finishes."""
    located = httpx.post(f"{api}/v1/players/{player_id}/geolocation", headers=auth, timeout=10,
                         json={"latitude": 40.2171, "longitude": -74.7429,
                               "ip_address": "8.8.8.8"})
    assert located.status_code == 201 and located.json()["allowed"], located.text
    started = httpx.post(f"{api}/v1/deposits",
                         headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                         json={"player_id": player_id, "amount": 5000, "currency": "USD",
                               "payment_method": "pm_card_visa"}, timeout=10)
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 30
    while True:
        deposit = httpx.get(f"{api}/v1/deposits/{started.json()['id']}", headers=auth,
                            timeout=10).json()
        if deposit["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return deposit
        time.sleep(0.3)


def assert_clean_exit(stack: Stack) -> None:
    children = stack.children()
    assert {"temporal", "worker", "api"} <= set(children), children
    code = stack.interrupt()
    text = stack.text()
    assert code == 0, text[-4000:]
    assert [name for name, pid in children.items() if alive(pid)] == []
    # Reverse start order: the API goes first, Temporal last.
    stops = re.findall(r"stopping (\S+) \(pid", text)
    assert stops == list(reversed(list(children))), stops


def test_dev_stack_starts_stops_cleanly_and_resumes_its_data(stack_env):
    env, ports, tmp_path = stack_env
    address = env["SETTLEPAY_TEMPORAL_ADDRESS"]
    workflow_id = f"devstack-probe-{uuid.uuid4().hex[:8]}"

    first = Stack(env, tmp_path / "run1.log")
    try:
        api, auth = check_up(first.wait_up(), ports, env["SETTLEPAY_DEV_API_KEY"])
        created = httpx.post(f"{api}/v1/players",
                             headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                             json={"partner_id": "devstack", "first_name": "Ada",
                                   "last_name": "Lovelace", "jurisdiction": "US-NJ",
                                   "date_of_birth": "1980-01-01"}, timeout=10)
        assert created.status_code == 201, created.text
        player_id = created.json()["id"]
        deposit = deposit_through_the_stack(api, auth, player_id)
        assert deposit["status"] == "succeeded", deposit
        asyncio.run(start_tagged_workflow(address, workflow_id, player_id))
        expected = {workflow_id, f"deposit-{deposit['id']}"}
        status, found, registered = asyncio.run(
            temporal_state(address, workflow_id, player_id, expected))
        assert {key.name for key in search_attributes.ALL} <= registered
        assert found == expected
        assert_clean_exit(first)
    finally:
        first.kill()
    assert (tmp_path / "data" / "temporal" / "temporal.db").stat().st_size > 0
    assert (tmp_path / "data" / "logs" / "api.log").exists()

    second = Stack(env, tmp_path / "run2.log")
    try:
        api, auth = check_up(second.wait_up(), ports, env["SETTLEPAY_DEV_API_KEY"])
        player = httpx.get(f"{api}/v1/players/{player_id}", headers=auth, timeout=10)
        assert player.status_code == 200, player.text
        assert (player.json()["first_name"], player.json()["last_name"]) == ("Ada", "Lovelace")
        assert [(b["currency"], b["cash"]) for b in player.json()["balances"]] == [("USD", 5000)]
        again = httpx.get(f"{api}/v1/deposits/{deposit['id']}", headers=auth, timeout=10).json()
        assert (again["status"], again["ledger_transaction_id"]) == (
            "succeeded", deposit["ledger_transaction_id"])
        status, found, registered = asyncio.run(
            temporal_state(address, workflow_id, player_id, expected))
        assert status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
        assert found == expected
        assert_clean_exit(second)
    finally:
        second.kill()


def postgres_processes(pgdata: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit():
                continue
            if str(pgdata) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def test_dev_stack_without_a_database_url_runs_an_embedded_postgresql(tmp_path):
    env, ports = base_env(tmp_path)
    pgdata = tmp_path / "data" / "postgres"
    stack = Stack(env, tmp_path / "run.log")
    try:
        text = stack.wait_up(timeout=90)  # the first start runs initdb
        assert f"database: embedded PostgreSQL in {pgdata}" in text
        assert (pgdata / "PG_VERSION").exists()
        assert postgres_processes(pgdata), "the embedded server is not running"
        api, auth = check_up(text, ports, env["SETTLEPAY_DEV_API_KEY"])
        created = httpx.post(f"{api}/v1/players", headers=auth, timeout=10,
                             json={"partner_id": "devstack", "first_name": "Grace",
                                   "last_name": "Hopper"})
        assert created.status_code == 201, created.text
        assert_clean_exit(stack)
        assert "stopping the embedded PostgreSQL" in stack.text()
        deadline = time.monotonic() + 10
        while postgres_processes(pgdata) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert postgres_processes(pgdata) == [], "the embedded PostgreSQL outlived the stack"
    finally:
        stack.kill()
        for pid in postgres_processes(pgdata):
            os.kill(pid, signal.SIGKILL)


def test_dev_stack_refuses_a_busy_port_with_a_clear_error(stack_env):
    env, ports, _ = stack_env
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports["api"]))
        busy.listen()
        result = subprocess.run([sys.executable, "-m", "settlepay.cli", "dev"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"API (SETTLEPAY_API_PORT) port {ports['api']}" in result.stdout
    assert "started" not in result.stdout  # nothing was left half-started


def test_dev_stack_stops_everything_when_a_child_fails_to_start(stack_env):
    env, ports, tmp_path = stack_env
    # A worker that cannot start (a thread pool of zero threads is refused).
    stack = Stack({**env, "SETTLEPAY_WORKER_ACTIVITY_THREADS": "0"}, tmp_path / "broken.log")
    try:
        code = stack.process.wait(90)
        text = stack.text()
        assert code == 1, text[-4000:]
        assert "ERROR: worker exited with code 1 while waiting for the worker" in text
        assert "max_workers must be greater than 0" in text  # the child's own last words are shown
        assert UP not in text
        children = stack.children()
        assert {"temporal", "worker"} <= set(children) and "api" not in children
        assert [name for name, pid in children.items() if alive(pid)] == []
    finally:
        stack.out.close()
        stack.kill()
