"""Partner webhooks: every domain event a partner cares about, signed, retried and observable.

Partners register endpoints (POST /v1/webhook_endpoints: a URL, event-type filters, a rate
limit); the dispatcher (`settlepay webhooks dispatch`, N processes) delivers the partner's
events to them on the Standard Webhooks 1.0 wire format.

How an event travels
--------------------
1. A command writes its change and `outbox.emit(...)` in one transaction (commands/).
2. **Ingest** (webhooks/fanout.py, store/webhooks.py): a dispatcher takes unpublished
   `outbox_events` rows with `SELECT ... FOR UPDATE SKIP LOCKED`, turns each into the partners'
   events (`webhook_events`, one per partner concerned) and one `webhook_messages` row per
   (event, enabled endpoint whose filters match), and marks the outbox rows published — all in
   ONE transaction. An event whose change did not commit is invisible here; one that committed
   stays unpublished until a dispatcher commits its messages: no "row written, enqueue failed"
   gap, and a crash mid-ingest just rolls back for the next dispatcher. A row the fan-out
   cannot read (a bug) is left unpublished and logged, and does not hold up the others.
3. **Deliver** (webhooks/dispatcher.py, webhooks/sender.py): a dispatcher claims due messages
   (`FOR UPDATE SKIP LOCKED`, status `sending`, a lease naming the dispatcher), commits, sends
   the HTTP request outside any transaction, then records the attempt and the message's next
   state (commands/webhooks.py `record_deliveries`). Two lanes with their own claim query and
   their own concurrency: first attempts and retries, so first attempts never queue behind
   retries.
4. **Sweep**: every dispatcher holds a session advisory lock named by its owner id; a `sending`
   row whose owner's lock is free (the process died: SIGKILL, OOM, lost connection) or whose
   lease expired goes back to `pending` and is sent again. Delivery is therefore at least once;
   N dispatchers never claim the same message at the same time, so in normal operation each
   message is sent once per attempt. Ordering is NOT promised: receivers dedupe on
   `webhook-id` (the event id, stable across retries and resends) and order by the body's
   `timestamp`.

Retries (webhooks/schedule.py)
------------------------------
Attempt 1 is immediate; then `SETTLEPAY_WEBHOOKS_RETRY_SCHEDULE_SECONDS` (5 s, 5 min, 30 min,
2 h, 5 h, 10 h, 14 h, 20 h, 24 h), each jittered ±20 %: 1 + len(schedule) attempts, then the
message fails and `message.attempt.exhausted` is emitted. Only 2xx is success; 3xx is a failure
(redirects are never followed); 410 Gone disables the endpoint; 429 / 502 / 504 throttle the
endpoint (nothing is sent to it before the pause ends) and a `Retry-After` sets the pause and
the next attempt, clamped to `SETTLEPAY_WEBHOOKS_RETRY_AFTER_MAX_SECONDS`; each attempt times
out after 15 s. An endpoint failing for 5 days with no success is disabled and
`endpoint.disabled` is emitted. Manual resends (`POST /v1/events/{id}/resend`) and recoveries
(`POST /v1/webhook_endpoints/{id}/recover`) are messages of their own with one attempt: a
failed one is not rescheduled. Disabling an endpoint fails its pending messages; recover
resends them once it is enabled again.

Volume (webhooks/filters.py)
----------------------------
Per-bet events (`bet.placed`, `bet.rejected`, `bet.settled`, `bet.resettled`,
`bet.rolled_back`) exist only by subscription: a filter must name them (`bet.*` or the exact
type); `*` never matches them, and they are not even made for a partner without such an
endpoint. The default is the market summary: `market.settled` (first settlement),
`market.resettled` (a later version) and `market.rolled_back`, one per partner with bets on
the market, carrying that partner's bet counts and totals only. Settlement writes one
`bets.settled` outbox row per batch (thousands of bets); ingest splits it into per-bet events
for the subscribed partners only.

Operational events: `endpoint.disabled` and `message.attempt.exhausted` go to the partner's
OTHER endpoints whose filters match (never to the endpoint they are about, and an operational
event's own exhaustion emits nothing: no feedback loop). `webhook.test` goes to its one
endpoint.

Wire format (webhooks/signing.py)
---------------------------------
POST, body `{"type", "timestamp", "data"}` (compact JSON, keys sorted: the same bytes on every
attempt), headers `webhook-id` (event id), `webhook-timestamp` (the attempt's time, Unix
seconds), `webhook-signature` (`v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`; during a
secret rotation's grace two, space-separated, the new one first). Secrets are `whsec_` + base64
of 32 random bytes, sealed at rest with Fernet (`SETTLEPAY_WEBHOOKS_SECRET_ENCRYPTION_KEY`).

SSRF (webhooks/ssrf.py)
-----------------------
At connect time every address the host resolves to must be globally routable (not loopback,
private, link-local, CGNAT, multicast, reserved...) unless inside
`SETTLEPAY_WEBHOOKS_ALLOWED_NETWORKS` (dev stack and tests: 127.0.0.1/32). The checked address is
the one connected to (the request goes to the IP, with the original Host header and TLS SNI),
so a DNS answer that changes between check and connect (rebinding) cannot reach a private
address. httpx runs with `trust_env=False` (no proxy from the environment bypasses the check)
and `follow_redirects=False`.

Where it runs
-------------
`settlepay webhooks dispatch` is its own process (`make dev` starts one; docker-compose runs the
`webhooks` service, scale it to N). It needs PostgreSQL only, not Temporal: nothing shows in
Temporal UI; `settlepay webhooks endpoints|attempts|resend|recover` and the API show its state.

Must never: deliver an event to another partner's endpoint, follow a redirect, connect to an
address the guard refused, or write audit / outbox records itself (commands/webhooks.py does).
"""
