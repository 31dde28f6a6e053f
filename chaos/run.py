"""`python -m chaos --seed N [--minutes M]`: one chaos run, end to end.

1. The stack comes up on free ports (chaos/stack.py) in a temporary folder.
2. The workload (chaos/workload.py) runs while a thread applies the seeded schedule
   (chaos/schedule.py): SIGKILLs and restarts, a Temporal restart, proxy faults, Stripe faults.
3. Faults end; withheld Stripe webhooks are released (Stripe retries a dropped one later);
   the stack converges.
4. The end checks below are evaluated; a table of the faults injected and the checks is
   printed; the exit status is 0 only when every check passed. The temporary folder (logs of
   every process) is kept when a check failed, or with --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import Engine, text

from chaos import schedule
from chaos.schedule import Fault
from chaos.stack import ROOT, ChaosStack
from chaos.workload import Workload, located

CONVERGE_SECONDS = 240.0
TERMINAL = {"COMPLETED", "FAILED", "CANCELED", "TERMINATED", "TIMED_OUT", "CONTINUED_AS_NEW"}
# Running workflows are fine when they wait for someone, under a state that says so.
WAITING_WORDS = ("await", "review", "requires_action", "documents", "resubmission", "waiting")


@dataclass
class Applied:
    fault: Fault
    started_at: float
    error: str | None = None
    recovery_seconds: float | None = None


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    items: tuple[str, ...] = ()   # what failed, each in full (the table cuts the detail)


@dataclass
class Injector:
    stack: ChaosStack
    faults: list[Fault]
    t0: float
    wall_t0: float = field(default_factory=time.time)
    applied: list[Applied] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        for fault in self.faults:
            delay = self.t0 + fault.at_seconds - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            record = Applied(fault, time.monotonic() - self.t0)
            self.applied.append(record)
            self.stack.say(f"chaos: {fault.describe()}")
            try:
                self.apply(fault, record)
            except Exception as error:
                record.error = f"{type(error).__name__}: {error}"
                self.stack.say(f"chaos: {fault.name} failed: {traceback.format_exc()}")

    def apply(self, fault: Fault, record: Applied) -> None:
        stack = self.stack
        if fault.kind in ("kill", "restart"):
            if fault.kind == "kill":
                stack.kill(fault.target)
            else:
                stack.stop(fault.target)
            time.sleep(fault.duration_seconds)
            record.recovery_seconds = stack.restart(fault.target)
        elif fault.kind == "proxy":
            proxy = stack.proxies[fault.target]
            proxy.set_faults(latency_ms=int(fault.params.get("latency_ms", 0)),
                             reset=fault.mode == "reset", stall=fault.mode == "stall")
            time.sleep(fault.duration_seconds)
            proxy.clear()
        elif fault.kind == "stripe":
            stripe_faults(stack, {**fault.params, "seed": stack.seed})
            time.sleep(fault.duration_seconds)
            stripe_faults(stack, None)

    def finish(self, thread: threading.Thread) -> None:
        self.stop.set()
        thread.join(timeout=120)
        for proxy in self.stack.proxies.values():
            proxy.clear()
        stripe_faults(self.stack, None)


def stripe_faults(stack: ChaosStack, changes: dict[str, Any] | None) -> None:
    """Set the Stripe sandbox's faults, or (None) clear them and release withheld webhooks."""
    with httpx.Client(base_url=stack.stripe_url, timeout=10) as http:
        if changes is None:
            http.delete("/_sandbox/faults").raise_for_status()
            http.post("/_sandbox/webhooks/withheld/release").raise_for_status()
        else:
            http.post("/_sandbox/faults", json=changes).raise_for_status()


# --- end checks ---------------------------------------------------------------------------
async def wait_for(probe: Callable[[], Awaitable[tuple[bool, str]]],
                   timeout: float) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    while True:
        done, detail = await probe()
        if done or time.monotonic() > deadline:
            return done, detail
        await asyncio.sleep(2)


async def workflows_settle(stack: ChaosStack, timeout: float) -> Check:
    client = await stack.temporal_client()

    async def probe() -> tuple[bool, str]:
        counts: dict[str, int] = {}
        stuck: list[str] = []
        async for wf in client.list_workflows():
            status = wf.status.name if wf.status is not None else "UNKNOWN"
            if status == "RUNNING":
                states = {key.name: value for key, value in wf.typed_search_attributes}
                named = [str(v) for k, v in states.items()
                         if k in ("PaymentState", "KycState", "WithdrawalState", "ReviewPending")
                         and v and any(w in str(v).lower() for w in WAITING_WORDS)]
                if named:
                    status = f"waiting ({named[0]})"
                else:
                    stuck.append(f"{wf.workflow_type} {wf.id} {states}")
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        if stuck:
            return False, f"{len(stuck)} neither terminal nor waiting, e.g. {stuck[:3]}; {summary}"
        return True, summary

    done, detail = await wait_for(probe, timeout)
    return Check("every workflow terminal or in a named waiting state", done, detail)


def db_count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


async def effects(workload: Workload, engine: Engine) -> list[Check]:
    """0 lost effects (answered, then missing) and 0 duplicated effects (one answer, two rows or
    two postings)."""
    model, client = workload.model, workload.client
    lost: list[str] = []
    duplicated: list[str] = []
    for player in model.players.values():
        answer = await client.call("GET", f"/v1/players/{player.id}", player.headers)
        if answer.status_code != 200:
            lost.append(f"player {player.id}: {answer.status_code}")
        for deposit_id, (_, status) in player.deposits.items():
            answer = await client.call("GET", f"/v1/deposits/{deposit_id}", player.headers)
            if answer.status_code != 200:
                lost.append(f"deposit {deposit_id}: {answer.status_code}")
            credits = db_count(engine, "SELECT count(*) FROM ledger_transactions WHERE "
                               "reference = :r AND kind = 'deposit' AND result = 'ok'",
                               r=deposit_id)
            want = 1 if status == "succeeded" else 0
            if credits < want:
                lost.append(f"deposit {deposit_id} {status}: {credits} credit(s)")
            if credits > want:
                duplicated.append(f"deposit {deposit_id} {status}: {credits} credits")
        for bet in player.bets:
            answer = await client.call("GET", f"/v1/bets/{bet.id}", player.headers)
            if answer.status_code != 200:
                lost.append(f"bet {bet.id}: {answer.status_code}")
        for withdrawal_id in player.withdrawals:
            answer = await client.call("GET", f"/v1/withdrawals/{withdrawal_id}",
                                       player.headers)
            if answer.status_code != 200:
                lost.append(f"withdrawal {withdrawal_id}: {answer.status_code}")
        for table, mine in (("deposits", len(player.deposits)), ("bets", len(player.bets)),
                            ("withdrawals", len(player.withdrawals))):
            rows = db_count(engine, f"SELECT count(*) FROM {table} WHERE player_id = :p",
                            p=player.id)
            if rows != mine:
                (duplicated if rows > mine else lost).append(
                    f"{table} of {player.id}: {rows} rows, {mine} answered")
    for partner_id in model.partners:
        rows = db_count(engine, "SELECT count(*) FROM players WHERE partner_id = :p",
                        p=partner_id)
        mine = sum(1 for p in model.players.values() if p.partner_id == partner_id)
        if rows != mine:
            (duplicated if rows > mine else lost).append(
                f"players of {partner_id}: {rows} rows, {mine} answered")
    effects_total = sum(len(p.deposits) + len(p.bets) + len(p.withdrawals) + 1
                        for p in model.players.values())
    return [Check("0 lost effects", not lost,
                  f"{effects_total} effects answered; lost: {lost[:3] or 0}"),
            Check("0 duplicated effects", not duplicated,
                  f"{model.retries} requests sent again; duplicated: {duplicated[:3] or 0}")]


def cli_checks(stack: ChaosStack, markets: set[str]) -> list[Check]:
    checks = []
    for args, name in ((("ledger", "check"), "ledger check"),
                       (("audit", "verify"), "audit verify")):
        code, output = stack.cli(*args)
        checks.append(Check(name, code == 0, output.splitlines()[-1] if output else str(code)))
    failed = []
    for market in sorted(markets):
        code, output = stack.cli("settlement", "verify", market)
        if code != 0:
            failed.append(f"{market}: {output.splitlines()[-1] if output else code}")
    checks.append(Check("settlement verify, every market", not failed,
                        f"{len(markets) - len(failed)}/{len(markets)} markets clean"
                        + (f"; {failed[:3]}" if failed else "")))
    return checks


async def reconciliation(stack: ChaosStack, since: float) -> Check:
    """A reconciliation run over the chaos run's window (reconciliation.runner, as its command
    would), its verdict after the safe repairs."""
    name = "reconciliation reconciled (or only pending items)"
    if not (ROOT / "reconciliation" / "runner.py").exists():
        return Check(name, True, "SKIPPED: reconciliation/ is not built yet")
    from adapters import gateway
    from reconciliation.model import Window
    from reconciliation.runner import RunOptions, run
    from settlepay.config import Settings
    from settlepay.db import make_engine

    settings = Settings(database_url=stack.database_url, stripe_api_base=stack.stripe_url)
    engine = make_engine(settings.sqlalchemy_url, pool_size=2)
    try:
        window = Window(int(since) - 60, int(time.time()) + 1)
        result = await run(engine, settings, gateway.from_settings(settings),
                           RunOptions(window=window), client=await stack.temporal_client())
    finally:
        engine.dispose()
    verdict = str(result.run["verdict"])
    breaks = len(result.outcome.breaks) if result.outcome is not None else "?"
    return Check(name, verdict in ("reconciled", "reconciled_with_pending"),
                 f"verdict {verdict}; {breaks} break(s), {len(result.repaired)} repaired")


async def webhooks_delivered(stack: ChaosStack, workload: Workload, timeout: float) -> Check:
    if workload.receiver_url is None:
        return Check("every subscribed webhook delivered at least once", True,
                     "SKIPPED: no webhook receiver sandbox")
    client = workload.client

    async def events_of(headers: dict[str, str]) -> set[str]:
        ids: set[str] = set()
        after = None
        while True:
            params = {"limit": 100, **({"starting_after": after} if after else {})}
            page = await client.ok("GET", "/v1/events", headers, (200,), params=params)
            ids.update(e["id"] for e in page["data"])
            if not page["has_more"] or not page["data"]:
                return ids
            after = page["data"][-1]["id"]

    async def probe() -> tuple[bool, str]:
        missing: list[str] = []
        total = 0
        async with httpx.AsyncClient(base_url=stack.receiver_url, timeout=10) as receiver:
            for partner_id, headers in workload.model.partners.items():
                events = await events_of(headers)
                total += len(events)
                got = (await receiver.get("/_sandbox/deliveries",
                                          params={"name": partner_id})).json()["data"]
                seen = {d["webhook_id"] for d in got}
                missing += sorted(events - seen)
        if missing:
            return False, f"{len(missing)} of {total} events never delivered, e.g. {missing[:3]}"
        return True, f"{total} events of {len(workload.model.partners)} partners delivered"

    done, detail = await wait_for(probe, timeout)
    return Check("every subscribed webhook delivered at least once", done, detail)


async def balances(workload: Workload) -> Check:
    model, client = workload.model, workload.client
    wrong: list[str] = []
    for player in model.players.values():
        body = await client.ok("GET", f"/v1/players/{player.id}", player.headers, (200,))
        usd = next((b for b in body["balances"] if b["currency"] == "USD"), None)
        want = model.expected_balance(player)
        got = {k: (usd or {}).get(k, 0) for k in want}
        if got != want:
            wrong.append(f"{player.id}: model {want} api {got}")
    return Check("client-side model of every balance equals the API's", not wrong,
                 f"{len(model.players) - len(wrong)}/{len(model.players)} players equal"
                 + (f"; {wrong[:2]}" if wrong else ""), tuple(wrong))


def workload_check(workload: Workload) -> Check:
    failures = workload.model.failures
    ops = sum(workload.model.operations.values())
    return Check("every client operation answered as expected", not failures,
                 f"{ops} operations in {workload.rounds} rounds"
                 + (f"; {len(failures)} failed: {failures[:2]}" if failures else ""),
                 tuple(failures))


def failed_items(checks: list[Check]) -> str:
    """Below the table: every item of every failed check, in full, one a line."""
    out = []
    for check in checks:
        if not check.passed and check.items:
            out.append(f"{check.name}: FAIL, {len(check.items)} in full:")
            out.extend(f"  - {item}" for item in check.items)
    return "".join(f"{line}\n" for line in out)


# --- the table ----------------------------------------------------------------------------
def table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    widths[-1] = min(widths[-1], 150)
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    cells = [h.ljust(w) for h, w in zip(header, widths, strict=True)]
    out = [title, line, "| " + " | ".join(cells) + " |", line]
    for row in rows:
        cells = [str(c)[:w].ljust(w) for c, w in zip(row, widths, strict=True)]
        out.append("| " + " | ".join(cells) + " |")
    out.append(line)
    return "\n".join(out)


def faults_table(injector: Injector, stack: ChaosStack) -> str:
    rows = []
    for name in schedule.fault_names():
        done = [a for a in injector.applied if a.fault.name == name]
        errors = [a.error for a in done if a.error]
        notes = []
        recoveries = [a.recovery_seconds for a in done if a.recovery_seconds is not None]
        if recoveries:
            notes.append("back in " + ", ".join(f"{s:.1f}s" for s in recoveries))
        params = [" ".join(f"{k}={v}" for k, v in a.fault.params.items()) for a in done]
        notes += [p for p in params if p]
        if errors:
            notes.append(f"ERROR {errors[0]}")
        at = ", ".join(f"t+{a.started_at:.0f}s" for a in done)
        rows.append((name, str(len(done)), at, "; ".join(notes)))
    for proxy_name, proxy in stack.proxies.items():
        counts = dict(proxy.counts)
        rows.append((f"proxy {proxy_name} totals", "-", "-",
                     ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))))
    return table("Faults injected", ("fault", "times", "at", "notes"), rows)


# --- main ---------------------------------------------------------------------------------
async def exercise(stack: ChaosStack, workload: Workload, injector: Injector,
                   seconds: float) -> list[Check]:
    thread = threading.Thread(target=injector.run, daemon=True, name="chaos-injector")
    thread.start()
    workload_end = injector.t0 + seconds * schedule.FAULT_FRACTION
    await workload.run(until=workload_end)
    remaining = injector.t0 + seconds * schedule.FAULT_FRACTION - time.monotonic()
    if remaining > 0:
        await asyncio.sleep(remaining)
    await asyncio.to_thread(injector.finish, thread)
    stack.say("chaos: faults over; converging")
    for name in ("postgres", "worker", "webhooks", "api", "temporal"):
        if stack.current[name].process.poll() is not None:   # a restart that did not finish
            await asyncio.to_thread(stack.restart, name)
    converge = max(60.0, injector.t0 + seconds - time.monotonic()) + CONVERGE_SECONDS
    from settlepay.db import make_engine

    engine = make_engine(stack.database_url.replace("postgresql://", "postgresql+psycopg://"),
                         pool_size=2)
    try:
        checks = [workload_check(workload), await workflows_settle(stack, converge)]
        checks += await effects(workload, engine)
        checks += await asyncio.to_thread(cli_checks, stack, workload.model.markets)
        checks.append(await reconciliation(stack, injector.wall_t0))
        checks.append(await webhooks_delivered(stack, workload, 120))
        checks.append(await balances(workload))
    finally:
        engine.dispose()
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="replays the same fault schedule")
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the run")
    parser.add_argument("--players", type=int, default=3, help="players per workload round")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder and logs")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    faults = schedule.build(args.seed, seconds)
    began = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix=f"settlepay-chaos-{args.seed}-"))
    print(f"chaos run: seed {args.seed}, {args.minutes:g} min, {len(faults)} faults; "
          f"logs in {folder}", flush=True)
    for fault in faults:
        print("  " + fault.describe(), flush=True)
    with open(folder / "stack.log", "w", encoding="utf-8") as log:
        checks, injector, stack = run_stack(args, faults, folder, log)
    if injector is not None:
        print(faults_table(injector, stack))
    print(table("Checks", ("check", "result", "detail"),
                [(c.name, "pass" if c.passed else "FAIL", c.detail) for c in checks]))
    print(failed_items(checks), end="")
    passed = bool(checks) and all(c.passed for c in checks)
    print(f"chaos run seed {args.seed}: {'PASSED' if passed else 'FAILED'} in "
          f"{time.monotonic() - began:.0f} s" + ("" if passed else f"; logs kept in {folder}"))
    if passed and not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if passed else 1


def run_stack(args: argparse.Namespace, faults: list[Fault], folder: Path,
              log: IO[str]) -> tuple[list[Check], Injector | None, ChaosStack]:
    seconds = args.minutes * 60
    stack = ChaosStack(folder / "data", args.seed, out=log)
    checks: list[Check] = []
    injector: Injector | None = None
    began = time.monotonic()
    try:
        stack.up()
        print(f"stack up in {time.monotonic() - began:.0f} s", flush=True)
        workload = Workload(
            api_url=stack.api_url, stripe_url=stack.stripe_url,
            receiver_url=stack.receiver_url if stack.sandbox_present("webhook_receiver")
            else None, operator_key=stack.settings.dev_api_key,
            seed=args.seed, players_per_round=args.players,
            locate=located(stack.database_url.replace("postgresql://",
                                                      "postgresql+psycopg://")))
        injector = Injector(stack, faults, time.monotonic())

        async def go() -> list[Check]:
            try:
                return await exercise(stack, workload, injector, seconds)
            finally:
                await workload.close()

        checks = asyncio.run(go())
        print("operations: " + ", ".join(f"{k} {v}" for k, v in
                                         sorted(workload.model.operations.items())))
    except Exception:
        checks.append(Check("the run itself", False, traceback.format_exc().splitlines()[-1]))
        traceback.print_exc()
    finally:
        stack.down()
    return checks, injector, stack


if __name__ == "__main__":
    sys.exit(main())
