"""`Idempotency-Key` on POST requests, with Stripe's semantics, for every router at once.

How a route uses it
-------------------
Nothing to do for the optional case: `IdempotencyMiddleware` (installed by api/app.py) handles
every POST that carries the header. A route that must not run without one (deposits,
withdrawals) asks for the key as a dependency, which also hands it the key to derive its own
business idempotency keys from (a workflow id, a ledger key):

    from api.idempotency import IdempotencyKey, required_idempotency_key

    IdempotencyKeyRequired = Annotated[IdempotencyKey, Depends(required_idempotency_key)]

    @router.post("/v1/deposits", status_code=201)
    async def create_deposit(body: DepositCreate, principal: DepositsWriter,
                             idem: IdempotencyKeyRequired):
        workflow_id = f"deposit-{idem.operation_id}"   # same key, same workflow: one effect
        ...

Missing header on such a route → 400 `idempotency_key_required`. `optional_idempotency_key`
gives `IdempotencyKey | None` for routes that merely want the value.

The rules (per API key: two keys may use the same Idempotency-Key independently)
------------------------------------------------------------------------------
* First request with a key: it is claimed in its own short transaction (a unique row), the
  route runs, and its answer (status, headers, body) is stored before it is sent.
* Same key, same request (method, path, query and JSON body, key order ignored) after that:
  the stored answer, byte for byte, with `Idempotent-Replayed: true`. The replay is ONE
  indexed query and never reaches the router: read by the rate limiter with the key's token
  when it knows the key (api/rate_limits.py, outside this middleware: its one statement), else
  the record by its primary key once the rate limiter has authenticated the key, else the API
  key and the record fetched together.
* Same key, different request → 422 `idempotency_key_reused`.
* Same key while the first request is still running → 409 `idempotency_key_in_use` with
  `Retry-After: 1`, at once (no waiting: a waiting request would hold a worker and a
  connection). However many duplicates arrive together, the route runs once.
* Answers not kept, so a retry runs the request again: 5xx (the transaction rolled back),
  401/403 (the request never started), 409 and 429 (transient), and requests that failed
  validation (the client may fix the body and retry with the same key).
* After a 5xx (or a request that died) the key stays bound to its request: the failed attempt
  may already have started its operation under `IdempotencyKey.operation_id` (a workflow, a
  deposit row), so the same request may run again but a different one is 422
  `idempotency_key_reused`, as after a success. Refusals that ran nothing (401/403, 409, 429,
  validation) leave no trace: the key is free for any request.
* A first attempt that died between its commit and storing its answer leaves an unfinished
  claim; after `Settings.idempotency_stale_after_seconds` a retry may run the request again.
  This is why routes derive their business keys (workflow ids, ledger keys, row ids) from
  `IdempotencyKey.operation_id`: running twice must still produce one effect.

This module must never claim, replay or store anything for a request whose API key did not
authenticate (such a request goes on untouched and the route answers 401), and never look at
another API key's records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import PRINCIPAL_SCOPE_KEY, Principal, authenticate, presented_key
from api.problems import DISCARD_SCOPE_KEY, Problem
from api.threads import run_sync
from store import api_keys, idempotency

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
CONTEXT_SCOPE_KEY = "settlepay.idempotency"
# A PreRead the rate limiter leaves for this middleware (api/rate_limits.py).
PREREAD_SCOPE_KEY = "settlepay.idempotency.preread"
NOT_KEPT = frozenset({401, 403, 409, 429})
DEFAULT_STALE_AFTER = 60.0

log = logging.getLogger("settlepay.api.idempotency")

T = TypeVar("T")

# The idempotency statements run on threads of their own rather than anyio's shared pool:
# handing work to a plain executor costs a fraction of anyio's bookkeeping, which is a large
# part of a replay, and a few threads are enough for statements that take well under a ms.
_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="idempotency")


async def _db(function: Callable[..., T], *args: Any) -> T:
    """Run one statement on the executor. If the request is cancelled meanwhile, still wait
    for the statement to finish: a claim it made must be known so that it can be released."""
    return await run_sync(function, *args, executor=_EXECUTOR)


@dataclass(frozen=True)
class IdempotencyKey:
    api_key_id: str
    key: str

    @property
    def operation_id(self) -> str:
        """A stable id for the business operation this key names, unique across API keys:
        derive workflow ids and ledger keys from it."""
        return hashlib.sha256(f"{self.api_key_id}\x00{self.key}".encode()).hexdigest()[:32]


_DESCRIBED = Header(None, alias=HEADER, description=(
    "A unique key per operation (e.g. a UUID), reused on every retry of it: the first answer is "
    "replayed. Required on requests that move money."))

_Authenticated = Annotated[Principal, Depends(authenticate)]


def _scoped(request: Request, principal: Principal, value: str | None) -> IdempotencyKey | None:
    context = request.scope.get(CONTEXT_SCOPE_KEY)
    if context is not None:
        return context
    # The middleware did not handle the request (not a POST): still hand out a scoped key.
    return None if value is None else IdempotencyKey(principal.api_key_id, _valid_key(value))


async def optional_idempotency_key(
        request: Request, principal: _Authenticated,
        idempotency_key: str | None = _DESCRIBED) -> IdempotencyKey | None:
    return _scoped(request, principal, idempotency_key)


async def required_idempotency_key(
        request: Request, principal: _Authenticated,
        idempotency_key: str | None = _DESCRIBED) -> IdempotencyKey:
    # Declared optional on purpose: a missing header is our 400 problem, not a 422.
    key = _scoped(request, principal, idempotency_key)
    if key is None:
        raise Problem(400, "idempotency_key_required", "Idempotency-Key header required",
                      f"This request moves money: send a unique `{HEADER}` header (for example a "
                      "UUID) and reuse it when you retry.")
    return key


@dataclass(frozen=True)
class PreRead:
    """The record of (API key id, Idempotency-Key) as read with the request's rate-limit take
    (None: there was none), in the same statement that checked the key; used as `find`'s."""

    api_key_id: str
    key: str
    record: idempotency.Record | None


def valid_key_text(key: str) -> bool:
    return bool(key.strip()) and len(key) <= MAX_KEY_LENGTH


def _valid_key(key: str) -> str:
    if not valid_key_text(key):
        raise Problem(400, "idempotency_key_invalid", "Invalid Idempotency-Key",
                      f"An {HEADER} has 1 to {MAX_KEY_LENGTH} characters.")
    return key


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> bytes:
    """What "the same request" means: method, path, query and body (JSON compared as data)."""
    canonical = body
    if body[:1] in (b"{", b"["):
        try:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            pass
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


class IdempotencyMiddleware:
    """Pure ASGI middleware (no per-request task group): the replay path stays short."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._autocommit: tuple[Engine | None, Engine | None] = (None, None)

    def autocommit(self, engine: Engine) -> Engine:
        """The engine in autocommit mode: each statement here is its own transaction, with no
        BEGIN/ROLLBACK round trips. Made once per engine (making one costs half a millisecond)."""
        known, derived = self._autocommit
        if known is not engine:
            derived = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._autocommit = (engine, derived)
        return derived

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in scope["headers"]}
        key = headers.get("idempotency-key")
        plaintext = presented_key(headers)
        state = getattr(scope.get("app"), "state", None)
        engine = getattr(state, "engine", None)
        if key is None or plaintext is None or engine is None:
            return await self.app(scope, receive, send)   # no key, or the route answers 401
        try:
            _valid_key(key)
        except Problem as problem:
            return await problem.response()(scope, receive, send)
        stale_after = getattr(getattr(state, "settings", None), "idempotency_stale_after_seconds",
                              DEFAULT_STALE_AFTER)
        db = self.autocommit(engine)
        body = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        request_hash = fingerprint(method, path, scope.get("query_string", b""), body)

        principal: Principal | None = scope.get(PRINCIPAL_SCOPE_KEY)
        # The rate limiter authenticated this request's key: only the record is read, and when
        # there is none the key is claimed in the same hop to a thread (_find_or_claim).
        read_first = principal is not None
        record: idempotency.Record | None = None
        if principal is None:
            row, record = await _db(idempotency.lookup, engine, api_keys.key_prefix(plaintext),
                                    key, stale_after)
            found = None if row is None else api_keys.from_row(row)
            if found is None or not found.live or not api_keys.matches(row.key_hash, plaintext):
                return await self.app(scope, _replaying(body, receive), send)   # 401 follows
            principal = Principal.of(found)
            scope[PRINCIPAL_SCOPE_KEY] = principal
        api_key_id, token = principal.api_key_id, uuid.uuid4()
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        record_read: list[bool] = []   # _find_or_claim: the record was read (a claim may follow)
        pre: PreRead | None = scope.get(PREREAD_SCOPE_KEY)
        if pre is not None and (pre.api_key_id, pre.key) != (api_key_id, key):
            pre = None
        try:
            if read_first and pre is not None:   # read with the rate limiter's take
                record_read.append(True)
                record = pre.record
                if record is None:
                    record = await _db(_claim, db, api_key_id, key, method, path, request_hash,
                                       token, stale_after)
            elif read_first:
                record = await _db(_find_or_claim, engine, db, api_key_id, key, method, path,
                                   request_hash, token, stale_after, record_read)
            elif record is None:
                record = await _db(_claim, db, api_key_id, key, method, path, request_hash, token,
                                   stale_after)
            if record is not None:   # someone ran (or is running) this key before
                if record.request_hash != request_hash:
                    return await _reused().response()(scope, receive, send)
                if record.completed:
                    return await _replay(record, send)
                if not (record.stale and await _db(_take_over, db, api_key_id, key, request_hash,
                                                   stale_after, token)):
                    return await _in_use().response()(scope, receive, send)
            scope[CONTEXT_SCOPE_KEY] = IdempotencyKey(api_key_id, key)
            await self.app(scope, _replaying(body, receive), keep)
        except BaseException:
            if read_first and not record_read:   # the read failed: nothing was claimed
                raise
            await _db(_release, db, api_key_id, key, token)   # no-op unless this request claimed
            raise
        status = next(m["status"] for m in messages if m["type"] == "http.response.start")
        if status in NOT_KEPT or scope.get(DISCARD_SCOPE_KEY):
            await _db(_forget, db, api_key_id, key, token)
        elif status >= 500:
            await _db(_release, db, api_key_id, key, token)
        else:
            await _db(_complete, db, api_key_id, key, token, messages)
        # Sent only now: a client that has seen the answer gets the same one on every retry.
        for message in messages:
            await send(message)


def _claim(engine: Engine, api_key_id: str, key: str, method: str, path: str, request_hash: bytes,
           token: uuid.UUID, stale_after: float) -> idempotency.Record | None:
    """None when this request now holds the key; else the record of the one that does (or
    did). A record deleted between the two statements reads as "in use": the client retries."""
    if idempotency.claim_now(engine, api_key_id, key, method, path, request_hash, token):
        return None
    return idempotency.find(engine, api_key_id, key, stale_after) or idempotency.Record(
        request_hash=request_hash, status=None, headers=None, body=None, stale=False)


def _find_or_claim(engine: Engine, db: Engine, api_key_id: str, key: str, method: str,
                   path: str, request_hash: bytes, token: uuid.UUID, stale_after: float,
                   read: list[bool]) -> idempotency.Record | None:
    """The record of (API key, key) if there is one (`idempotency.find`, one indexed read);
    else `_claim`: the same two statements as before, in one hop to a thread. `read` gets an
    item once the read has answered, so that a failure before it releases nothing."""
    record = idempotency.find(engine, api_key_id, key, stale_after)
    read.append(True)
    if record is not None:
        return record
    return _claim(db, api_key_id, key, method, path, request_hash, token, stale_after)


def _take_over(engine: Engine, api_key_id: str, key: str, request_hash: bytes, stale_after: float,
               token: uuid.UUID) -> bool:
    with engine.connect() as conn:
        return idempotency.take_over(conn, api_key_id, key, request_hash, stale_after, token)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands the already-read body to the app, then the real channel."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _replay(record: idempotency.Record, send: Send) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1"))
               for name, value in record.headers or []]
    headers.append((b"content-length", str(len(record.body or b"")).encode()))
    headers.append((REPLAYED_HEADER.lower().encode(), b"true"))
    await send({"type": "http.response.start", "status": record.status, "headers": headers})
    await send({"type": "http.response.body", "body": record.body or b"", "more_body": False})


def _reused() -> Problem:
    return Problem(422, "idempotency_key_reused", "Idempotency-Key reused",
                   f"This {HEADER} was already used for a different request (another path or "
                   "body). Use a new key for a new request.")


def _in_use() -> Problem:
    return Problem(409, "idempotency_key_in_use", "Request with this Idempotency-Key in progress",
                   "An earlier request with this key is still running. Retry shortly to get its "
                   "answer.", headers={"Retry-After": "1"})


def _release(engine: Engine, api_key_id: str, key: str, token: uuid.UUID) -> None:
    """The request failed and may have had effects: free the key for the same request only."""
    try:
        with engine.connect() as conn:
            idempotency.release(conn, api_key_id, key, token)
    except Exception:  # the claim then goes stale and a later retry may run the request again
        log.exception("could not release idempotency key %r of %s", key, api_key_id)


def _forget(engine: Engine, api_key_id: str, key: str, token: uuid.UUID) -> None:
    """The request was refused before it ran: free the key for any request."""
    try:
        with engine.connect() as conn:
            idempotency.forget(conn, api_key_id, key, token)
    except Exception:  # the claim then goes stale: a retry of the same request may run later
        log.exception("could not forget idempotency key %r of %s", key, api_key_id)


def _complete(engine: Engine, api_key_id: str, key: str, token: uuid.UUID,
              messages: list[Message]) -> None:
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    headers = [[name.decode("latin-1"), value.decode("latin-1")]
               for name, value in start.get("headers", []) if name.lower() != b"content-length"]
    try:
        if not idempotency.complete_now(engine, api_key_id, key, token, start["status"],
                                        headers, body):
            log.warning("idempotency key %r of %s was taken over before its answer was stored",
                        key, api_key_id)
    except Exception:  # the client still gets its answer; a retry after the stale time re-runs
        log.exception("could not store the answer for idempotency key %r of %s", key, api_key_id)
