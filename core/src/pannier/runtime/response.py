"""Response selection: what a source answers its client with (Mirth's ``ResponseSelector``,
§3.4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pannier.connectors import Response
from pannier.datatypes import DataType
from pannier.model.channel import (
    AUTO_AFTER_SOURCE,
    AUTO_BEFORE,
    AUTO_DESTINATIONS,
    RESPONSE_NONE,
)
from pannier.model.status import Status

#: Destination status precedence for "Destinations completed": ERROR > QUEUED > SENT > FILTERED.
_PRECEDENCE = {Status.ERROR: 4, Status.QUEUED: 3, Status.SENT: 2, Status.FILTERED: 1}


def destinations_status(statuses: list[Status], destination_count: int) -> Status:
    """The overall status the "Destinations completed" response reports.

    As ``ResponseSelector``: SENT, or ERROR when fewer destination messages exist than
    destinations; then the highest-precedence status among the destination messages, if any,
    replaces it (so a filtered or errored source, which reaches no destination, gives ERROR).
    """
    status = Status.ERROR if len(statuses) < destination_count else Status.SENT
    ranked = [s for s in statuses if s in _PRECEDENCE]
    return max(ranked, key=_PRECEDENCE.__getitem__) if ranked else status


def select_response(
    variable: str,
    *,
    datatype: DataType,
    raw: str,
    source_status: Status,
    source_error: str,
    destination_statuses: list[Status],
    destination_count: int,
    response_map: Mapping[str, Any],
) -> Response | None:
    """The response for one processed message, per the source's ``responseVariable``."""
    if variable == RESPONSE_NONE:
        return None
    if variable == AUTO_BEFORE:
        # Mirth assumes success: the message has not been processed yet.
        return datatype.auto_response(raw, Status.SENT)
    if variable == AUTO_AFTER_SOURCE:
        return datatype.auto_response(raw, source_status, source_error)
    if variable == AUTO_DESTINATIONS:
        status = destinations_status(destination_statuses, destination_count)
        return datatype.auto_response(raw, status, source_error if status == Status.ERROR else "")
    value = response_map.get(variable)
    if value is None:
        return None
    if isinstance(value, Response):
        return value
    return Response(status=Status.SENT, message=str(value))
