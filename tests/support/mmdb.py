"""A tiny MaxMind DB (.mmdb) writer, for tests: IPv4 networks -> records, 24-bit search tree.

Written from the MaxMind DB format spec (search tree, 16-byte separator, data section,
metadata after "\\xab\\xcd\\xefMaxMind.com") so tests can exercise the real `geoip2` reader with
records the shipped GeoLite2 database lacks (anonymous-proxy, VPN and hosting flags).
Supports maps, arrays, strings, booleans, unsigned ints and doubles; no pointers.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from pathlib import Path
from typing import Any

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


def _control(type_id: int, size: int) -> bytes:
    if size < 29:
        size_bits, extra = size, b""
    elif size < 29 + 256:
        size_bits, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        size_bits, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        size_bits, extra = 31, (size - 65821).to_bytes(3, "big")
    if type_id <= 7:
        return bytes([(type_id << 5) | size_bits]) + extra
    return bytes([size_bits, type_id - 7]) + extra


def _uint(type_id: int, value: int) -> bytes:
    payload = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _control(type_id, len(payload)) + payload


def encode(value: Any) -> bytes:
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, str):
        raw = value.encode()
        return _control(2, len(raw)) + raw
    if isinstance(value, float):
        return _control(3, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative integers are not supported here")
        return _uint(6 if value < 2**32 else 9, value)
    if isinstance(value, dict):
        out = _control(7, len(value))
        for key, item in value.items():
            out += encode(str(key)) + encode(item)
        return out
    if isinstance(value, (list, tuple)):
        return _control(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def write_mmdb(path: Path, database_type: str, networks: dict[str, dict[str, Any]]) -> Path:
    """Write an IPv4 database mapping each CIDR in `networks` to its record (no overlaps)."""
    data = b""
    offsets: list[tuple[ipaddress.IPv4Network, int]] = []
    for cidr, record in networks.items():
        offsets.append((ipaddress.IPv4Network(cidr), len(data)))
        data += encode(record)

    nodes: list[list[Any]] = [[None, None]]
    for network, offset in offsets:
        bits, node = int(network.network_address), 0
        for depth in range(network.prefixlen):
            bit = (bits >> (31 - depth)) & 1
            if depth == network.prefixlen - 1:
                nodes[node][bit] = ("data", offset)
            else:
                child = nodes[node][bit]
                if not isinstance(child, int):
                    nodes.append([None, None])
                    child = nodes[node][bit] = len(nodes) - 1
                node = child

    count = len(nodes)

    def record_value(child: Any) -> int:
        if child is None:
            return count
        if isinstance(child, int):
            return child
        return count + 16 + child[1]

    tree = b"".join(record_value(left).to_bytes(3, "big") + record_value(right).to_bytes(3, "big")
                    for left, right in nodes)
    metadata = {
        "node_count": count, "record_size": 24, "ip_version": 4, "database_type": database_type,
        "languages": ["en"], "binary_format_major_version": 2, "binary_format_minor_version": 0,
        "build_epoch": int(time.time()), "description": {"en": "settlepay test database"},
    }
    # Metadata integer types the spec asks for: uint16 for these three, uint64 for the epoch.
    meta = _control(7, len(metadata))
    for key, value in metadata.items():
        meta += encode(key)
        if key in ("record_size", "ip_version", "binary_format_major_version",
                   "binary_format_minor_version"):
            meta += _uint(5, value)
        elif key == "build_epoch":
            meta += _uint(9, value)
        else:
            meta += encode(value)
    path.write_bytes(tree + b"\x00" * 16 + data + METADATA_MARKER + meta)
    return path
