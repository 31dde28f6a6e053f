"""Canonical JSON: one byte string per value, so a hash computed today verifies tomorrow."""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS_HASH = b"\x00" * 32


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash: bytes, record_json: str) -> bytes:
    return hashlib.sha256(prev_hash + record_json.encode("utf-8")).digest()
