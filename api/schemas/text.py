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
That is API version 2026-12-06 (domain.api_versions.EXACT_IDENTIFIERS); a request served under
an older version still has them stripped, as before.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints, model_validator
from pydantic.fields import FieldInfo

from api.versioning import served_version
from domain import api_versions

# What pydantic-core's strip removes (Unicode White_Space), in syntax both dialects read.
WHITE_SPACE = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_KEPT = f"[^{WHITE_SPACE}]"
# The same characters, as str.strip takes them (not str.strip(): it also takes U+001C-U+001F).
_STRIPPED = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) \
    + "\u2028\u2029\u202f\u205f\u3000"



# A text field taken exactly as sent (its model strips the others): its pattern says it all.
Exact = Annotated[str, StringConstraints(strip_whitespace=False)]


class ExactFields(BaseModel):
    """A request model with Exact fields: under an API version before EXACT_IDENTIFIERS they
    are stripped first, as they used to be (a model-level step: a field-level validator inside
    an optional field's union would lose the field's strip_whitespace=False)."""

    @model_validator(mode="before")
    @classmethod
    def _stripped_before_exact_identifiers(cls, data: Any) -> Any:
        if not isinstance(data, dict) or api_versions.at_least(
                served_version(), api_versions.EXACT_IDENTIFIERS):
            return data
        names = exact_names(cls)
        return {name: value.strip(_STRIPPED) if name in names and isinstance(value, str)
                else value for name, value in data.items()}


def is_exact(field: FieldInfo) -> bool:
    """An Exact field: an optional one keeps the alias, a required one its constraint."""
    return field.annotation in (Exact, Exact | None) or any(
        isinstance(c, StringConstraints) and c.strip_whitespace is False
        for c in field.metadata)


@cache
def exact_names(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, field in model.model_fields.items() if is_exact(field))
# An http(s) URL: no white space, control character or invisible one anywhere (a URL
# percent-encodes them).
HTTP_URL = rf"^https?://[^{WHITE_SPACE}\x00-\x1f\x7f\u200b\ufeff]+$"


def not_blank(min_length: int = 1) -> str:
    """A pattern met by a value that keeps at least `min_length` (>= 1) characters once its
    surrounding white space is stripped: a kept character at each end, the rest anything."""
    if min_length <= 1:
        return _KEPT
    return rf"{_KEPT}[\s\S]{{{min_length - 2},}}{_KEPT}"
