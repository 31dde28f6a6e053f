"""Schemathesis hooks for tests/api/test_openapi_contract.py (loaded via SCHEMATHESIS_HOOKS).

A positive (schema-valid) POST gets a fresh Idempotency-Key: generated keys repeat across
cases, and a key sent again with another body is rightly refused (422), which is not what the
case tests. Negative cases keep whatever header schemathesis made, so a missing or malformed
key is still tried.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import schemathesis

_RUN = uuid.uuid4().hex[:12]
_COUNTER = itertools.count()


def _is_positive(case: Any) -> bool:
    meta = getattr(case, "_meta", None)
    if meta is None:
        return True
    return str(getattr(meta.generation.mode, "value", meta.generation.mode)) == "positive"


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    if case.method.upper() != "POST" or not _is_positive(case):
        return
    if case.headers is None:
        case.headers = {}
    case.headers["Idempotency-Key"] = f"st-{_RUN}-{next(_COUNTER)}"
