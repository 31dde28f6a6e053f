"""Rate limits: a token bucket per API key (and per key and scope), shared by every API process.

What a client sees
------------------
Every request made with a valid API key takes a token from its key's bucket: `requests` per
`window_seconds` (Settings.rate_limit_requests / _window_seconds, or the key's own
`rate_limits["*"]`, set by an operator). Where a scope has a limit (Settings.rate_limit_scopes,
or the key's `rate_limits["<scope>"]`), a request needing that scope also takes a token from
the key's bucket for that scope. Answers carry the IETF draft's headers for the key's bucket
(draft-ietf-httpapi-ratelimit-headers):

    RateLimit-Limit: 100          the bucket size
    RateLimit-Remaining: 57       tokens left
    RateLimit-Reset: 1            seconds until the bucket is full again
    RateLimit-Policy: 100;w=1     requests per window

A request over a limit is answered 429 problem+json `rate_limited` with `Retry-After` (seconds
until a token is back) and the headers of the bucket that refused it; nothing runs, no
Idempotency-Key is claimed. Requests without a valid key take no token (they are answered 401
and cost one indexed lookup). While PostgreSQL cannot be reached, the key cannot be
authenticated nor a token taken: the request is answered 503 `database_unavailable` with
Retry-After (api/problems.py DatabaseUnavailableGuard), never let through unlimited.

Where the buckets live (Settings.rate_limit_backend)
----------------------------------------------------
* `postgres` (default, what `make dev` uses: no extra service): the UNLOGGED table
  rate_limit_buckets, one upsert per bucket per request (store/rate_limits.py);
* `redis`: a hash per bucket, refilled and taken from by one Lua script (EVALSHA) under the
  Redis server's own clock (RedisBuckets below: a minimal RESP client, no dependency);
* `off`: no limits, no headers.
The key is authenticated here (the route's `authenticate` then reuses the principal), and its
last use is recorded at most once a minute per key and process (store.api_keys.touch).

A key this process has authenticated (PostgreSQL buckets) is known by the SHA-256 of its
plaintext, with its principal and the version of its row: its next request is ONE statement
(store/rate_limits.py `take_known`) that takes the token only if the row is still at that
version and live, and, for a POST with an Idempotency-Key, reads that key's record for the
idempotency middleware (so a replay costs that statement and nothing else). A key revoked,
expired or changed (scopes, limits, version pin) is therefore seen at its very next request:
the row no longer matches, nothing is taken, and the key is authenticated again from scratch
(revoked or expired: 401). At most KNOWN_KEYS_MAX keys are known, the oldest forgotten first.

Must never: count a request whose key did not authenticate against that key; decide anything
but "may this key make this request now".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlparse

from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import versioning
from api.auth import PRINCIPAL_SCOPE_KEY, Principal, presented_key
from api.idempotency import DEFAULT_STALE_AFTER, PREREAD_SCOPE_KEY, PreRead, valid_key_text
from api.problems import Problem
from domain.rate_limits import Decision, RateLimit, key_limit, parse, scope_limit
from settlepay.config import Settings
from store import api_keys
from store import rate_limits as buckets

log = logging.getLogger("settlepay.api.rate_limits")
T = TypeVar("T")
TOUCH_INTERVAL_SECONDS = 60.0
KNOWN_KEYS_MAX = 4_096
BACKENDS = ("postgres", "redis", "off")

_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rate-limits")


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    future = asyncio.get_running_loop().run_in_executor(_EXECUTOR,
                                                        functools.partial(function, *args))
    return await future


class Buckets(Protocol):
    async def take(self, engine: Engine, bucket: str, limit: RateLimit) -> Decision: ...


class Autocommit:
    """An engine's autocommit twin, made once per engine (each statement its own transaction:
    no BEGIN / COMMIT round trips on the request path)."""

    def __init__(self) -> None:
        self._pair: tuple[Engine | None, Engine | None] = (None, None)

    def __call__(self, engine: Engine) -> Engine:
        known, derived = self._pair
        if known is not engine or derived is None:
            derived = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._pair = (engine, derived)
        return derived


class PostgresBuckets:
    """Buckets in rate_limit_buckets; each take is one autocommit statement."""

    def __init__(self) -> None:
        self.autocommit = Autocommit()

    def take_now(self, engine: Engine, bucket: str, limit: RateLimit) -> Decision:
        with self.autocommit(engine).connect() as conn:
            return buckets.take(conn, bucket, limit)

    async def take(self, engine: Engine, bucket: str, limit: RateLimit) -> Decision:
        return await _in_thread(self.take_now, engine, bucket, limit)


# KEYS[1] the bucket; ARGV capacity, tokens per second. Returns {allowed, tokens}. The Redis
# server's clock (TIME) is the one clock of every API process; an idle bucket expires once full.
REDIS_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local capacity, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(held[1]), tonumber(held[2])
if tokens == nil then tokens, at = capacity, t end
local refilled = math.min(capacity, tokens + math.max(0, t - at) * rate)
local allowed = 0
if refilled >= 1 then refilled, allowed = refilled - 1, 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(refilled), 'at', tostring(t))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return {allowed, tostring(refilled)}
"""
REDIS_TAKE_SHA = hashlib.sha1(REDIS_TAKE.encode()).hexdigest()


class RedisError(Exception):
    """An error reply of the Redis server, or a broken connection."""


class RedisBuckets:
    """Buckets in Redis, over a few pooled connections speaking RESP (no client library)."""

    KEY_PREFIX = "settlepay:rate:"

    def __init__(self, url: str, connections: int = 8, timeout_seconds: float = 1.0, *,
                 key_prefix: str = KEY_PREFIX) -> None:
        parsed = urlparse(url)
        # Every bucket's Redis key starts with it (tests on a shared server use their own).
        self.key_prefix = key_prefix
        if parsed.scheme != "redis":
            raise ValueError(f"a Redis URL is redis://[:password@]host[:port][/db], not {url!r}")
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 6379
        self.password = unquote(parsed.password) if parsed.password else None
        self.db = int(parsed.path.strip("/") or 0)
        self.timeout = timeout_seconds
        self._idle: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None \
            = None
        self._slots: asyncio.Semaphore | None = None
        self._connections = connections

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.timeout)
        if self.password:
            await self._call(reader, writer, "AUTH", self.password)
        if self.db:
            await self._call(reader, writer, "SELECT", str(self.db))
        return reader, writer

    @staticmethod
    def _encode(*parts: str) -> bytes:
        out = [f"*{len(parts)}\r\n".encode()]
        for part in parts:
            data = part.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    @classmethod
    async def _reply(cls, reader: asyncio.StreamReader) -> Any:
        line = await reader.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else (await reader.readexactly(size + 2))[:-2].decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [await cls._reply(reader) for _ in range(size)]
        raise RedisError(f"unexpected reply {line!r}")

    async def _call(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    *parts: str) -> Any:
        writer.write(self._encode(*parts))
        await writer.drain()
        return await asyncio.wait_for(self._reply(reader), self.timeout)

    async def command(self, *parts: str) -> Any:
        """One command on a pooled connection (a broken connection is dropped, not reused)."""
        if self._idle is None or self._slots is None:
            self._idle, self._slots = asyncio.LifoQueue(), asyncio.Semaphore(self._connections)
        async with self._slots:
            connection = self._idle.get_nowait() if not self._idle.empty() else None
            if connection is None:
                connection = await self._connect()
            try:
                answer = await self._call(*connection, *parts)
            except RedisError as error:
                if str(error).startswith(("NOSCRIPT", "ERR", "WRONGTYPE")):
                    self._idle.put_nowait(connection)   # an answer: the connection is fine
                else:
                    connection[1].close()
                raise
            except BaseException:
                connection[1].close()
                raise
            self._idle.put_nowait(connection)
            return answer

    async def take(self, engine: Engine, bucket: str, limit: RateLimit) -> Decision:
        arguments = ("1", f"{self.key_prefix}{bucket}", str(limit.requests),
                     repr(limit.per_second))
        try:
            allowed, tokens = await self.command("EVALSHA", REDIS_TAKE_SHA, *arguments)
        except RedisError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
            allowed, tokens = await self.command("EVAL", REDIS_TAKE, *arguments)
        return Decision(bool(allowed), limit, float(tokens))

    async def close(self) -> None:
        while self._idle is not None and not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class RateLimits:
    """The limits of one API process: its configuration and where its buckets live."""

    def __init__(self, settings: Settings) -> None:
        if settings.rate_limit_backend not in BACKENDS:
            raise ValueError(f"SETTLEPAY_RATE_LIMIT_BACKEND must be one of {BACKENDS}, "
                             f"not {settings.rate_limit_backend!r}")
        self.default = RateLimit(settings.rate_limit_requests, settings.rate_limit_window_seconds)
        self.scopes = parse(settings.rate_limit_scopes)
        self.backend: Buckets | None = {
            "postgres": PostgresBuckets, "off": lambda: None,
            "redis": lambda: RedisBuckets(settings.rate_limit_redis_url),
        }[settings.rate_limit_backend]()
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()
        self.autocommit = Autocommit()
        # SHA-256 of a plaintext -> (principal, its row's version, its key limit): keys this
        # process authenticated, checked again by every request's own statement (take_known).
        self._known: dict[bytes, tuple[Principal, str, RateLimit]] = {}

    def key_limit(self, principal: Principal) -> RateLimit:
        return key_limit(parse(principal.rate_limits), self.default)

    def scope_limit(self, principal: Principal, scope: str) -> RateLimit | None:
        return scope_limit(scope, parse(principal.rate_limits), self.scopes)

    def touch_pending(self, key_id: str) -> bool:
        """Whether the key's use is due to be recorded (due_for_touch without marking it)."""
        return (time.monotonic() - self._touched.get(key_id, float("-inf"))
                >= TOUCH_INTERVAL_SECONDS)

    def due_for_touch(self, key_id: str) -> bool:
        """Whether this process should record the key's use now (at most once a minute)."""
        now = time.monotonic()
        with self._touch_lock:
            if now - self._touched.get(key_id, float("-inf")) < TOUCH_INTERVAL_SECONDS:
                return False
            self._touched[key_id] = now
            return True

    def authenticate(self, engine: Engine, plaintext: str, digest: bytes | None = None,
                     ) -> tuple[Principal | None, Decision | None]:
        """(principal, the key bucket's decision when its buckets are in PostgreSQL): the
        lookup, the last-use record and the take on one connection, in one thread hop. A key
        that authenticates is known from now on (unless its last use was just recorded, which
        changed its row: its next request authenticates it again)."""
        digest = api_keys.key_hash(plaintext) if digest is None else digest
        with self.autocommit(engine).connect() as conn:
            found = api_keys.authenticate_versioned(conn, plaintext)
            if found is None:
                self._known.pop(digest, None)
                return None, None
            key, version = found
            touched = self.due_for_touch(key.id)
            if touched:
                api_keys.touch(conn, key.id)
            principal = Principal.of(key)
            if not isinstance(self.backend, PostgresBuckets):
                return principal, None
            limit = self.key_limit(principal)
            decision = buckets.take(conn, key.id, limit)
        if touched:   # the row's version changed with it: known again at the next request
            self._known.pop(digest, None)
        else:
            self._remember(digest, (principal, version, limit))
        return principal, decision

    def _remember(self, digest: bytes, known: tuple[Principal, str, RateLimit]) -> None:
        if len(self._known) >= KNOWN_KEYS_MAX and digest not in self._known:
            self._known.pop(next(iter(self._known), digest), None)
        self._known[digest] = known

    def take_known(self, engine: Engine, digest: bytes, idempotency_key: str | None,
                   stale_after: float) -> tuple[Principal, Decision, PreRead | None] | None:
        """A known key's request in one statement (store.rate_limits.take_known); None when
        the key is not known (any more): its row changed, or its last use is due."""
        known = self._known.get(digest)
        if known is None:
            return None
        principal, version, limit = known
        if self.touch_pending(principal.api_key_id):   # authenticate records it
            return None
        taken = buckets.take_known(engine, principal.api_key_id, version, limit,
                                   idempotency_key=idempotency_key, stale_after=stale_after)
        if taken is None:   # revoked, expired or changed since: authenticate it again
            self._known.pop(digest, None)
            return None
        decision, record = taken
        read = (None if idempotency_key is None
                else PreRead(principal.api_key_id, idempotency_key, record))
        return principal, decision, read

    async def for_key(self, engine: Engine, plaintext: str, *,
                      idempotency_key: str | None = None,
                      stale_after: float = DEFAULT_STALE_AFTER,
                      ) -> tuple[Principal | None, Decision | None, PreRead | None]:
        """(principal, decision, the record of `idempotency_key` when it was read with them).
        A known key: one statement; else the key is authenticated (and its token taken)."""
        digest = None
        if isinstance(self.backend, PostgresBuckets):
            digest = api_keys.key_hash(plaintext)
            if digest in self._known:
                fast = await _in_thread(self.take_known, engine, digest, idempotency_key,
                                        stale_after)
                if fast is not None:
                    return fast
        principal, decision = await _in_thread(self.authenticate, engine, plaintext, digest)
        if principal is not None and decision is None and self.backend is not None:
            decision = await self.backend.take(engine, principal.api_key_id,
                                               self.key_limit(principal))
        return principal, decision, None

    async def check_scope(self, engine: Engine, principal: Principal, scope: str) -> None:
        """Take a token from the key's bucket for `scope` when the scope has a limit; a 429
        problem when it has none left."""
        limit = self.scope_limit(principal, scope)
        if limit is None or self.backend is None:
            return
        decision = await self.backend.take(engine, f"{principal.api_key_id} {scope}", limit)
        if not decision.allowed:
            raise too_many(decision, f"requests needing {scope!r}")

    async def close(self) -> None:
        if isinstance(self.backend, RedisBuckets):
            await self.backend.close()


def headers(decision: Decision) -> dict[str, str]:
    return {"RateLimit-Limit": str(decision.limit.requests),
            "RateLimit-Remaining": str(decision.remaining),
            "RateLimit-Reset": str(decision.reset_seconds),
            "RateLimit-Policy": decision.limit.policy}


def too_many(decision: Decision, what: str = "requests") -> Problem:
    retry = max(1, decision.retry_after_seconds)
    limit = decision.limit
    return Problem(429, "rate_limited", "Too many requests",
                   f"This API key may make {limit.requests} {what} per "
                   f"{limit.window_seconds} s; retry in {retry} s.",
                   headers={**headers(decision), "Retry-After": str(retry)})


class RateLimitMiddleware:
    """Pure ASGI: authenticate the key, take its token, answer 429 or add the headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = getattr(scope.get("app"), "state", None)
        limits: RateLimits | None = getattr(state, "rate_limits", None)
        engine = getattr(state, "engine", None)
        if limits is None or engine is None:
            return await self.app(scope, receive, send)
        raw = {name.decode("latin-1").lower(): value.decode("latin-1")
               for name, value in scope["headers"]}
        plaintext = presented_key(raw)
        if plaintext is None:
            return await self.app(scope, receive, send)
        # A POST's Idempotency-Key record is read with the take (a known key's one statement)
        # and handed to the idempotency middleware (api/idempotency.py).
        idempotency_key = raw.get("idempotency-key") if scope["method"] == "POST" else None
        if idempotency_key is not None and not valid_key_text(idempotency_key):
            idempotency_key = None   # the idempotency middleware refuses it (400)
        principal, decision, read = await limits.for_key(
            engine, plaintext, idempotency_key=idempotency_key,
            stale_after=getattr(getattr(state, "settings", None),
                                "idempotency_stale_after_seconds", DEFAULT_STALE_AFTER))
        if principal is None:
            return await self.app(scope, receive, send)   # the route answers 401
        scope[PRINCIPAL_SCOPE_KEY] = principal
        if read is not None:
            scope[PREREAD_SCOPE_KEY] = read
        versioning.settle(scope, principal.api_version)    # the key's pinned API version
        if decision is None:
            return await self.app(scope, receive, send)
        if not decision.allowed:
            return await too_many(decision).response()(scope, receive, send)
        extra = [(name.lower().encode(), value.encode())
                 for name, value in headers(decision).items()]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in extra if h[0] not in present)]}
            await send(message)

        await self.app(scope, receive, with_headers)
