"""Mirth's message statuses and content types, with the exact codes stored in the database.

These values are part of the takeover contract (mirth-compat.md §2): they are written to
``D_MM.STATUS`` and ``D_MC.CONTENT_TYPE`` and read by Java Mirth, so they never change.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Status(StrEnum):
    """A connector message's status (``D_MM.STATUS``)."""

    RECEIVED = "R"
    FILTERED = "F"
    TRANSFORMED = "T"
    SENT = "S"
    QUEUED = "Q"
    ERROR = "E"
    PENDING = "P"

    @property
    def is_completed(self) -> bool:
        """Mirth's ``isCompleted()``: filtered, transformed or sent."""
        return self in (Status.FILTERED, Status.TRANSFORMED, Status.SENT)


class ContentType(IntEnum):
    """The kind of a stored content row (``D_MC.CONTENT_TYPE``)."""

    RAW = 1
    PROCESSED_RAW = 2
    TRANSFORMED = 3
    ENCODED = 4
    SENT = 5
    RESPONSE = 6
    RESPONSE_TRANSFORMED = 7
    PROCESSED_RESPONSE = 8
    CONNECTOR_MAP = 9
    CHANNEL_MAP = 10
    RESPONSE_MAP = 11
    PROCESSING_ERROR = 12
    POSTPROCESSOR_ERROR = 13
    RESPONSE_ERROR = 14
    SOURCE_MAP = 15

    @property
    def error_code(self) -> int:
        """The bit this content type sets in ``D_MM.ERROR_CODE`` (0 for non-error types)."""
        return _ERROR_BITS.get(self, 0)


_ERROR_BITS = {
    ContentType.PROCESSING_ERROR: 1,
    ContentType.POSTPROCESSOR_ERROR: 2,
    ContentType.RESPONSE_ERROR: 4,
}


class StorageMode(IntEnum):
    """Mirth's ``MessageStorageMode``; the number is Mirth's own ordinal."""

    DISABLED = 1
    METADATA = 2
    RAW = 3
    PRODUCTION = 4
    DEVELOPMENT = 5
