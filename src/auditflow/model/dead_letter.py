"""Dead letters as the API serves them: a message or single item that could not be processed, where
it came from and why, kept until it is replayed or purged."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from auditflow.model.timeutil import UtcDatetime

# Bodies longer than this are cut in listings (`body_truncated`); replay always sends the whole body.
BODY_PREVIEW_BYTES = 64 * 1024


class DeadLetter(BaseModel):
    id: UUID = Field(description="Stable id: the same dead letter received twice is stored once")
    queue: str = Field(description="The queue the message was consumed from, and where replay sends it")
    reason: str = Field(description="Why it was dead-lettered (invalid, poison: <error>, delivery limit reached)")
    received_at: UtcDatetime = Field(description="When the store received it")
    headers: dict[str, Any] = Field(description="The message headers, without the dead-letter bookkeeping")
    body: str = Field(description="The message body as UTF-8 text (invalid bytes replaced)")
    body_size: int = Field(description="Bytes in the whole body")
    body_truncated: bool = Field(description="True when `body` shows only the first 64 KiB")


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    total: int = Field(description="Dead letters currently stored")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class DeadLetterSelection(BaseModel):
    """Which dead letters a replay or purge concerns: the listed ids, or all of them."""

    model_config = ConfigDict(extra="forbid")

    ids: list[UUID] | None = Field(None, max_length=1000, description="Dead letters to act on")
    all: StrictBool = Field(False, description="Act on every stored dead letter (ignored when `ids` is given)")


class DeadLetterResult(BaseModel):
    replayed: int = 0
    purged: int = 0
    remaining: int = Field(description="Dead letters stored after the operation")
