"""`Moment`: a date-time the API reads, written as ISO 8601 and never as a number.

pydantic also reads a number (or a numeric string such as `?created[lte]=0.5`) as Unix seconds;
the OpenAPI description says `format: date-time`, so the API refuses numbers (422
`validation_error`) instead of accepting what its own contract calls invalid.

    created_gte: Annotated[Moment | None, Query(...)] = None
    since: Annotated[AwareDatetime | None, NOT_A_NUMBER] = None
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator

_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _not_a_number(value: Any) -> Any:
    if isinstance(value, bool | int | float) or (isinstance(value, str)
                                                 and _NUMBER.fullmatch(value)):
        raise ValueError("a date-time in ISO 8601 (2026-11-01T00:00:00Z), not a number")
    return value


NOT_A_NUMBER = BeforeValidator(_not_a_number)
Moment = Annotated[datetime, NOT_A_NUMBER]
