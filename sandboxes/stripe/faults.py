"""Fault injection: what the sandbox does wrong on purpose, settable per test and at run time.

Request faults apply to the Stripe API (/v1/...), optionally only to some path prefixes:
  error_rate        fraction of requests answered with `error_status` (default 500)
  fail_next         the next N requests answered with `error_status` (deterministic)
  error_phase       "before": the request is not processed; "after": it is processed (and its
                    idempotent answer stored) but the answer is lost - the ambiguous failure
  latency_ms        added before processing (a client timeout below it = a timeout)
  response_delay_ms added after processing, before answering (webhooks overtake the answer)
Payment behaviour:
  async_settle_ms   > 0: successful card payments answer `processing` and settle this much later
Webhook faults (decided per event when it is created):
  webhook_delay_ms, webhook_duplicate_rate, webhook_drop_rate (never sent; see /_sandbox/withheld),
  webhook_reorder_window_ms (events in the window are delivered newest first).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Faults:
    error_rate: float = 0.0
    fail_next: int = 0
    error_status: int = 500
    error_phase: str = "before"
    latency_ms: int = 0
    response_delay_ms: int = 0
    paths: list[str] = field(default_factory=list)     # empty = every /v1 path
    methods: list[str] = field(default_factory=list)   # empty = every method
    async_settle_ms: int = 0
    webhook_delay_ms: int = 0
    webhook_duplicate_rate: float = 0.0
    webhook_drop_rate: float = 0.0
    webhook_reorder_window_ms: int = 0
    seed: int | None = None

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise ValueError(f"unknown fault setting: {name}")
            setattr(self, name, value)
        if self.error_phase not in ("before", "after"):
            raise ValueError("error_phase must be 'before' or 'after'")
        if "seed" in changes and self.seed is not None:
            RNG.seed(self.seed)

    def applies_to(self, method: str, path: str) -> bool:
        if self.methods and method.upper() not in {m.upper() for m in self.methods}:
            return False
        return not self.paths or any(path.startswith(p) for p in self.paths)

    def take_error(self) -> bool:
        """Whether this request gets an injected error (consumes one of `fail_next`)."""
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return self.error_rate > 0 and RNG.random() < self.error_rate

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


RNG = random.Random()
