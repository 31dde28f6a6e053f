"""Text fields the API strips: the pattern that says, in the OpenAPI schema, what the API holds.

Request models strip surrounding whitespace (`str_strip_whitespace`, pydantic-core's trim: the
Unicode White_Space characters) before `min_length` is checked, so "\\n" is too short for a
field of `min_length=1` although its JSON Schema length is 1. `not_blank(n)` is a pattern a
value meets exactly when it keeps at least n characters once stripped: the schema then refuses
what the API refuses (the contract fuzz, tests/api/test_openapi_contract.py, sends such values).
The set is spelled out rather than `\\s`, which differs between JSON Schema's ECMA-262 regexes
(U+FEFF is one, U+0085 is not) and the API's (the other way round).

Identifiers and codes with an anchored pattern of their own (a currency, a partner id, a
second-factor code, an email) are `Exact`: taken as sent, never stripped, so "\\tUSD" is refused
by the API exactly as its schema refuses it (stripping first made the API accept what the schema
refuses, and a length counts the same characters on both sides only when nothing is stripped).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

# What pydantic-core's strip removes (Unicode White_Space), in syntax both dialects read.
WHITE_SPACE = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_KEPT = f"[^{WHITE_SPACE}]"

# A text field taken exactly as sent (its model strips the others): its pattern says it all.
Exact = Annotated[str, StringConstraints(strip_whitespace=False)]
# An http(s) URL: no white space, control character or invisible one anywhere (a URL
# percent-encodes them).
HTTP_URL = rf"^https?://[^{WHITE_SPACE}\x00-\x1f\x7f\u200b\ufeff]+$"


def not_blank(min_length: int = 1) -> str:
    """A pattern met by a value that keeps at least `min_length` (>= 1) characters once its
    surrounding white space is stripped: a kept character at each end, the rest anything."""
    if min_length <= 1:
        return _KEPT
    return rf"{_KEPT}[\s\S]{{{min_length - 2},}}{_KEPT}"
