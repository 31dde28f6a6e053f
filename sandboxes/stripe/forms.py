"""Stripe's form encoding: `metadata[key]=v`, `expand[0]=x`, `created[gte]=1` -> nested values.

Stripe (and its SDKs) send request parameters form-encoded with bracketed keys; this module
turns them back into dicts and lists, and reads typed values the way Stripe validates them.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from sandboxes.stripe.errors import invalid

_PART = re.compile(r"\[([^\]]*)\]")


def decode(body: str) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head] + _PART.findall("[" + rest) if rest else [head]
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # `a[]=x` appends
                part = str(len(node))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        value = {k: _listify(v) for k, v in value.items()}
        if value and all(k.isdigit() for k in value):
            return [value[k] for k in sorted(value, key=int)]
    return value


def integer(params: dict[str, Any], name: str, *, required: bool = False,
            minimum: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise invalid(f"Missing required param: {name}.", code="parameter_missing", param=name)
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and re.fullmatch(r"-?\d+", raw):
        value = int(raw)
    else:
        raise invalid(f"Invalid integer: {raw}", code="parameter_invalid_integer", param=name)
    if minimum is not None and value < minimum:
        raise invalid(f"This value must be greater than or equal to {minimum}.",
                      code="parameter_invalid_integer", param=name)
    return value


def boolean(params: dict[str, Any], name: str, default: bool = False) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    if raw in (True, "true"):
        return True
    if raw in (False, "false"):
        return False
    raise invalid(f"Invalid boolean: {raw}", code="parameter_invalid_boolean", param=name)


def string(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise invalid(f"Missing required param: {name}.", code="parameter_missing", param=name)
        return None
    if not isinstance(raw, str):
        raise invalid(f"Invalid string: {raw}", code="parameter_invalid_string", param=name)
    return raw


def currency(params: dict[str, Any], name: str = "currency") -> str:
    value = string(params, name, required=True)
    assert value is not None
    if not re.fullmatch(r"[a-zA-Z]{3}", value):
        raise invalid(f"Invalid currency: {value}.", code="parameter_invalid_string", param=name)
    return value.lower()


def metadata(params: dict[str, Any]) -> dict[str, str]:
    raw = params.get("metadata") or {}
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise invalid("Invalid object", code="parameter_invalid_string", param="metadata")
    return {str(k): str(v) for k, v in raw.items()}


def reject_unknown(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed and name != "expand":
            raise invalid(f"Received unknown parameter: {name}", code="parameter_unknown",
                          param=name)
