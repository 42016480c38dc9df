"""Error bodies the API answers with, and bounds shared by every route."""

from __future__ import annotations

from pydantic import BaseModel, Field

# Ids are 32-bit integer columns on Postgres: a larger one in a path is a 422, never a failed query.
INT32_MAX = 2**31 - 1


class ErrorOut(BaseModel):
    """An error: what went wrong and, where there is one, the fix."""

    detail: str


class ProblemsOut(BaseModel):
    """An invalid request: one `field: what is wrong` line per problem."""

    detail: str
    problems: list[str] = Field(default_factory=list)
