"""The body of an operator's decision on something waiting for review (a KYC case, a
withdrawal above the approval threshold)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Literal["approve", "reject"]
    note: str | None = Field(None, max_length=1000)
