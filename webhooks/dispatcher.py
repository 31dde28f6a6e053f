"""The dispatcher process (`settlepay webhooks dispatch`): ingest, deliver, record, sweep.

    async with Dispatcher(engine, settings) as dispatcher:
        await dispatcher.run(stop)          # until `stop` is set (SIGTERM / SIGINT)
    # tests drive it step by step instead: await dispatcher.drain(); await dispatcher.sweep()

Loops of one process (asyncio; SQL in threads, each step one short transaction):
- ingest: outbox rows -> partner events + messages (webhooks/fanout.py), wakes the first lane;
- two delivery lanes, FIRST (attempts = 0) and RETRY, each claiming up to
  `webhooks_dispatcher_concurrency` due messages and sending them concurrently, so retries
  never hold up first attempts;
- the recorder: finished attempts, in batches, through `commands.webhooks.record_deliveries`;
- the sweeper: re-drives what dead dispatchers were sending (their session advisory lock is
  free) and expired leases.
The process's owner id is a session advisory lock held on a connection of its own for its whole
life: when the process dies, PostgreSQL drops the connection and the lock, and any other
dispatcher's sweeper re-drives its messages. On SIGTERM it stops claiming, lets the attempts in
flight finish (at most the timeout), records them and exits 0.
Must never: send while holding a database transaction, or record over a message another
dispatcher took (finish_messages checks the lease owner).
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from opentelemetry import trace
from sqlalchemy import Connection, Engine, RowMapping
from sqlalchemy.exc import SQLAlchemyError

from commands import webhooks as commands
from settlepay.config import Settings, get_settings
from settlepay.db import make_engine, run_in_transaction
from store import webhooks as store
from store.webhooks import Lane
from webhooks import fanout, signing
from webhooks.clock import Clock, SystemClock
from webhooks.schedule import Outcome, RetryPolicy, Trigger, retry_after_seconds
from webhooks.sender import Sender
from webhooks.ssrf import Guard, Resolver, system_resolver

log = logging.getLogger("settlepay.webhooks")
# Traces (settlepay/observability): a delivered batch is one trace (`deliver_due`: each message's
# "webhook delivery" span with its HTTP POST, then the recording transaction); in `run`, each
# delivery is a trace and the batch recording it links to them.
tracer = trace.get_tracer("settlepay.webhooks")

READY_MESSAGE = "webhook dispatcher ready"
INGEST_BATCH = 200              # outbox rows per ingest transaction
RECORD_BATCH = 500              # attempts per record transaction
SWEEP_SECONDS = 2.0
LEASE_MARGIN = timedelta(seconds=60)
RATE_WINDOW = timedelta(minutes=1)
OWNER_MAX = 2**31 - 1
# Touched by the sweep loop; webhooks/health.py (the container health check) reads its age.
HEARTBEAT = Path(tempfile.gettempdir()) / "settlepay-webhooks.heartbeat"


class Dispatcher:
    def __init__(self, engine: Engine, settings: Settings, *, clock: Clock | None = None,
                 resolver: Resolver = system_resolver, rng: random.Random | None = None,
                 sweep_seconds: float = SWEEP_SECONDS) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.policy = RetryPolicy.from_settings(settings)
        self.concurrency = settings.webhooks_dispatcher_concurrency
        self.poll_seconds = settings.webhooks_poll_seconds
        self.sweep_seconds = sweep_seconds
        self.lease = timedelta(seconds=settings.webhooks_timeout_seconds) + LEASE_MARGIN
        self.failing_window = timedelta(seconds=settings.webhooks_disable_after_failing_seconds)
        self.sender = Sender(Guard(settings.webhooks_allowed_networks, resolver),
                             timeout_seconds=settings.webhooks_timeout_seconds,
                             clients=2 * self.concurrency)     # both lanes at full
        self.owner = 0
        self._owner_conn: Connection | None = None
        self._secrets: dict[str, str] = {}
        self._results: asyncio.Queue[commands.Delivered] = asyncio.Queue()
        self._delivery_spans: dict[Any, trace.SpanContext] = {}   # message id -> its span
        self._wake = {lane: asyncio.Event() for lane in Lane}
        self._stopping = False
        self._poison: set[int] = set()      # outbox ids this process cannot ingest
        self._last_ids: list[int] = []

    # --- life ------------------------------------------------------------------------------
    async def __aenter__(self) -> Dispatcher:
        await asyncio.to_thread(self._take_owner_id)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sender.aclose()
        await asyncio.to_thread(self._release_owner_id)

    def _take_owner_id(self) -> None:
        conn = self.engine.connect()
        while True:
            owner = random.SystemRandom().randint(1, OWNER_MAX)
            taken = store.lock_owner(conn, owner)
            conn.commit()
            if taken:
                self.owner, self._owner_conn = owner, conn
                return

    def _release_owner_id(self) -> None:
        if self._owner_conn is not None:
            store.unlock_owner(self._owner_conn, self.owner)
            self._owner_conn.commit()
            self._owner_conn.close()
            self._owner_conn = None

    # --- steps (each one transaction) --------------------------------------------------------
    def _ingest_batch(self) -> int:
        """One batch of outbox rows made into partner events and messages; how many rows.

        A row this code cannot turn into partner events (a payload of a shape it does not
        know: a bug, not an outage) must not stop every other partner's deliveries: the batch
        is retried row by row and such a row is left unpublished, logged, and skipped by this
        process until it restarts. Database errors are raised (the loop tries again)."""
        try:
            return self._ingest()
        except SQLAlchemyError:
            raise
        except Exception:
            log.exception("ingesting outbox rows %s failed; trying them one by one",
                          self._last_ids)
        batch, handled = list(self._last_ids), 0
        for outbox_id in batch:
            try:
                handled += self._ingest(only=[outbox_id])
            except SQLAlchemyError:
                raise
            except Exception:
                self._poison.add(outbox_id)
                handled += 1
                log.exception("outbox event %d cannot be made into partner events: left "
                              "unpublished, skipped until this dispatcher restarts", outbox_id)
        return handled

    def _ingest(self, only: list[int] | None = None) -> int:
        def work(conn: Connection) -> tuple[int, int]:
            rows = store.claim_outbox(conn, INGEST_BATCH, skip=sorted(self._poison), only=only)
            self._last_ids = [row["id"] for row in rows]
            if not rows:
                return 0, 0
            outbox_rows = [fanout.OutboxRow.of(row) for row in rows]
            endpoints = [fanout.Endpoint(e["id"], e["partner_id"], tuple(e["event_types"]))
                         for e in store.enabled_endpoints(conn)]
            need = fanout.needs(outbox_rows, endpoints)
            facts = fanout.Facts(
                player_partners=store.partners_of_players(conn, need.player_ids),
                bets=store.bets_by_id(conn, need.bet_ids),
                markets={m: store.market_summaries(conn, m) for m in sorted(need.market_ids)})
            planned = fanout.plan(outbox_rows, endpoints, facts)
            now = self.clock.now()
            store.insert_events(conn, planned.events, now)
            store.insert_messages(conn, planned.messages, str(Trigger.SCHEDULED), now)
            store.mark_published(conn, [row.id for row in outbox_rows], now)
            return len(rows), len(planned.messages)

        rows, messages = run_in_transaction(self.engine, work)
        if messages:
            self._wake[Lane.FIRST].set()
        return rows

    def claim(self, lane: Lane, limit: int) -> list[RowMapping]:
        """Up to `limit` due messages of the lane, now `sending` under this dispatcher's lease
        (rate-limited endpoints within their budget for the minute)."""
        now = self.clock.now()
        lease_until = now + self.lease

        def work(conn: Connection) -> list[RowMapping]:
            jobs = store.claim(conn, lane, self.owner, now, lease_until, limit)
            room = limit - len(jobs)
            if room <= 0:
                return jobs
            for endpoint in store.rate_limited_due(conn, lane, now):
                started = endpoint["rate_window_started_at"]
                count = endpoint["rate_window_count"]
                if started is None or now - started >= RATE_WINDOW:
                    started, count = now, 0
                budget = min(endpoint["rate_limit_per_minute"] - count, room)
                if budget <= 0:
                    continue
                got = store.claim(conn, lane, self.owner, now, lease_until, budget,
                                  endpoint_id=endpoint["id"])
                if got:
                    store.set_rate_window(conn, endpoint["id"], started, count + len(got))
                    jobs += got
                    room -= len(got)
                if room <= 0:
                    break
            return jobs

        return run_in_transaction(self.engine, work)

    def _record(self, delivered: Sequence[commands.Delivered]) -> None:
        now = self.clock.now()
        links = [trace.Link(context) for d in delivered
                 if (context := self._delivery_spans.pop(d.message_id, None)) is not None]
        with tracer.start_as_current_span("webhooks record", links=links, attributes={
                "webhooks.attempts": len(delivered)}):
            disabled = run_in_transaction(self.engine, lambda conn: commands.record_deliveries(
                conn, self.owner, delivered, now=now, failing_window=self.failing_window))
        for row in disabled:
            log.warning("endpoint %s (%s) disabled: %s", row["id"], row["partner_id"],
                        row["disabled_reason"])

    def _keep_owner_id(self) -> None:
        """If the owner connection died (database restart), the lock went with it and other
        sweepers will re-drive what this process sends: take a new owner id."""
        if self._owner_conn is None:
            return
        try:
            held = store.holds_owner(self._owner_conn, self.owner)
            self._owner_conn.commit()
        except SQLAlchemyError:
            held = False
        if not held:
            log.warning("lost the owner lock (database restarted?); taking a new owner id")
            self._owner_conn.invalidate()
            self._owner_conn = None
            self._take_owner_id()

    def _sweep(self) -> int:
        self._keep_owner_id()
        now = self.clock.now()

        def expired(conn: Connection) -> int:
            store.fail_pending_of_unusable_endpoints(conn, now)
            return store.redrive(conn, now)

        count = run_in_transaction(self.engine, expired)
        with self.engine.connect() as conn:
            owners = store.sending_owners(conn)
            conn.commit()
            for owner in owners:
                if owner is None or owner == self.owner or not store.lock_owner(conn, owner):
                    conn.commit()
                    continue
                try:   # its process is gone: nobody holds its lock
                    count += store.redrive(conn, now, owner=owner)
                    conn.commit()
                finally:
                    store.unlock_owner(conn, owner)
                    conn.commit()
        if count:
            log.info("re-driven %d message(s) of dead dispatchers or expired leases", count)
        return count

    # --- one attempt ---------------------------------------------------------------------------
    def _signing_secrets(self, job: RowMapping, now: datetime) -> list[str]:
        key = self.settings.webhooks_secret_encryption_key
        tokens = [job["secret_sealed"]]
        expires = job["previous_secret_expires_at"]
        if job["previous_secret_sealed"] and expires is not None and expires > now:
            tokens.append(job["previous_secret_sealed"])
        if len(self._secrets) > 10_000:
            self._secrets.clear()
        return [self._secrets.setdefault(token, signing.unseal(token, key)) for token in tokens]

    async def deliver(self, job: RowMapping) -> commands.Delivered:
        """Send one claimed message and decide what comes next (nothing is written here)."""
        with tracer.start_as_current_span("webhook delivery", attributes={
                "webhooks.event_type": job["event_type"], "webhooks.trigger": job["trigger"],
                "webhooks.attempt": job["attempts"] + 1}) as span:
            delivered = await self._deliver(job)
            span.set_attribute("webhooks.outcome", str(delivered.after.outcome))
            if delivered.status_code is not None:
                span.set_attribute("http.response.status_code", delivered.status_code)
            if span.is_recording():
                if len(self._delivery_spans) > 10_000:   # never recorded (a crash): forget
                    self._delivery_spans.clear()
                self._delivery_spans[job["id"]] = span.get_span_context()
        return delivered

    async def _deliver(self, job: RowMapping) -> commands.Delivered:
        started = self.clock.now()
        body = signing.body_of(job["event_type"], job["occurred_at"], job["payload"])
        headers = signing.signed_headers(self._signing_secrets(job, started), job["event_id"],
                                         started, body)
        answer = await self.sender.send(job["url"], headers, body)
        finished = self.clock.now()
        attempt_number = job["attempts"] + 1
        after = self.policy.after_attempt(Trigger(job["trigger"]), attempt_number,
                                          answer.status_code,
                                          retry_after_seconds(answer.retry_after, finished),
                                          self.rng)
        next_at = (finished + timedelta(seconds=after.delay_seconds or 0.0)
                   if after.outcome == Outcome.RETRY else None)
        return commands.Delivered(
            message_id=job["id"], event_id=job["event_id"], event_type=job["event_type"],
            endpoint_id=job["endpoint_id"], partner_id=job["partner_id"],
            trigger=Trigger(job["trigger"]), attempt_number=attempt_number,
            status_code=answer.status_code, response_body=answer.body, error=answer.error,
            duration_ms=answer.duration_ms, started_at=started, finished_at=finished,
            after=after, next_attempt_at=next_at, occurred_at=job["occurred_at"])

    # --- driven step by step (tests, the CLI) ----------------------------------------------------
    async def ingest(self) -> int:
        """Ingest every unpublished outbox row; how many."""
        total = 0
        while count := await asyncio.to_thread(self._ingest_batch):
            total += count
        return total

    async def deliver_due(self, lane: Lane) -> int:
        """Claim one batch of due messages of the lane, send them, record them; how many."""
        jobs = await asyncio.to_thread(self.claim, lane, self.concurrency)
        if jobs:
            with tracer.start_as_current_span("webhooks deliver", attributes={
                    "webhooks.lane": str(lane), "webhooks.messages": len(jobs)}):
                delivered = await asyncio.gather(*(self.deliver(job) for job in jobs))
                await asyncio.to_thread(self._record, delivered)
        return len(jobs)

    async def drain(self) -> int:
        """Ingest, then deliver everything due now in both lanes, until nothing is due."""
        total = 0
        while True:
            done = await self.ingest()
            for lane in Lane:
                done += await self.deliver_due(lane)
            if not done:
                return total
            total += done

    async def sweep(self) -> int:
        return await asyncio.to_thread(self._sweep)

    # --- running -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Every loop until `stop` is set; then finish and record the attempts in flight."""
        recorder = asyncio.create_task(self._recorder(), name="webhooks-recorder")
        loops = [asyncio.create_task(self._ingest_loop(stop), name="webhooks-ingest"),
                 asyncio.create_task(self._sweep_loop(stop), name="webhooks-sweep")]
        lanes = [asyncio.create_task(self._lane(lane, stop), name=f"webhooks-{lane}")
                 for lane in Lane]
        log.info("%s (owner %d, %d deliveries in flight per lane)", READY_MESSAGE, self.owner,
                 self.concurrency)
        await stop.wait()
        self._stopping = True
        for lane in Lane:
            self._wake[lane].set()
        await asyncio.gather(*lanes, return_exceptions=True)   # in-flight attempts finish
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await self._results.join()
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)

    async def _ingest_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                count = await asyncio.to_thread(self._ingest_batch)
            except Exception:
                log.exception("ingesting outbox events failed; trying again")
                count = 0
            if count < INGEST_BATCH:
                await _wait(stop, self.poll_seconds)

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self._sweep)
                HEARTBEAT.touch()
            except Exception:
                log.exception("sweeping failed; trying again")
            await _wait(stop, self.sweep_seconds)

    async def _lane(self, lane: Lane, stop: asyncio.Event) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        wake = self._wake[lane]
        while not self._stopping:
            wake.clear()    # before claiming: a wake-up during the claim is not lost
            free = self.concurrency - len(in_flight)
            jobs: list[RowMapping] = []
            if free > 0:
                try:
                    jobs = await asyncio.to_thread(self.claim, lane, free)
                except Exception:
                    log.exception("claiming %s deliveries failed; trying again", lane)
            for job in jobs:
                task = asyncio.create_task(self._deliver_and_queue(job, wake))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if jobs and len(jobs) == free:
                continue  # a full batch: there may be more, and slots free up as they finish
            try:
                await asyncio.wait_for(wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _deliver_and_queue(self, job: RowMapping, wake: asyncio.Event) -> None:
        try:
            delivered = await self.deliver(job)
        except Exception:   # a bug, not the receiver: the lease expires and it is sent again
            log.exception("delivering message %s failed", job["id"])
            return
        finally:
            wake.set()
        self._results.put_nowait(delivered)

    async def _recorder(self) -> None:
        while True:
            batch = [await self._results.get()]
            while len(batch) < RECORD_BATCH and not self._results.empty():
                batch.append(self._results.get_nowait())
            while True:
                try:
                    await asyncio.to_thread(self._record, batch)
                    break
                except Exception:
                    log.exception("recording %d attempts failed; trying again", len(batch))
                    await asyncio.sleep(1.0)
            for _ in batch:
                self._results.task_done()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


def main(settings: Settings | None = None, **options: Any) -> int:
    """The process: one engine, one dispatcher, SIGINT / SIGTERM stop it gracefully."""
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.database_url:
        log.error("SETTLEPAY_DATABASE_URL (or DATABASE_URL) is not set")
        return 2

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        engine = make_engine(settings.sqlalchemy_url, pool_size=8, settings=settings)
        try:
            async with Dispatcher(engine, settings, **options) as dispatcher:
                await dispatcher.run(stop)
        finally:
            engine.dispose()

    asyncio.run(_main())
    log.info("webhook dispatcher stopped")
    return 0
