"""The list envelope every /v1 list answers with (Stripe's `object: list`), see api/pagination.py.

Each list names its own subclass (`class PlayerList(ListPage[Player])`), so the OpenAPI document
shows one schema per list with its item type.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class ListPage(BaseModel, Generic[T]):
    """A page of a list, newest first."""

    object: Literal["list"] = "list"
    url: str = Field(description="The list's path; page with starting_after / ending_before.",
                     examples=["/v1/players"])
    has_more: bool = Field(description="Whether more items lie beyond this page in the "
                                       "direction it was read.")
    data: list[T]
