"""Bounds every gateway input shares (pydantic only: protocol modules and routers use them).

An input the store cannot hold must be refused at the edge as INVALID_PAYLOAD naming its field,
never reach SQL and come back as a 500: integers past a column's range (or past 64 bits), NUL
characters (PostgreSQL text refuses them), digits that are not ASCII ("¹".isdigit() is true, but
int("¹") fails), and identifiers that no stored row can have.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

MAX_SQL_INT = 2**31 - 1  # INTEGER columns: ids, versions, token counts, HTTP statuses
MAX_SQL_BIGINT = 2**63 - 1  # BIGINT: offsets, and the largest seed a worker takes

# Identifiers the gateway makes or accepts, as filters and path parameters.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"  # pureinfer.logging keeps a caller's X-Request-ID only if sane
WORKER_ID_PATTERN = r"^w-[0-9a-f]{12}$"  # workers.repository.worker_id_for
KEY_ID_PATTERN = r"^[0-9a-f]{12}$"  # security.ApiKeys.key_id
CODE_PATTERN = r"^[A-Za-z0-9_.:-]{1,50}$"  # error codes, endpoint names


def no_nul(value: str | None) -> str | None:
    # None too: an update model makes every field optional and keeps this validator on `str | None`
    # (the fuzzer's PUT /templates/{ref} with a null field was a 500).
    if value is not None and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Text that goes into the store.
StoredText = Annotated[str, AfterValidator(no_nul)]


def as_row_id(ref: str) -> int | None:
    """`ref` as a row id when it is one: ASCII digits within INTEGER, else None (a name)."""
    if ref.isascii() and ref.isdigit() and int(ref) <= MAX_SQL_INT:
        return int(ref)
    return None
