"""Readable channel files (TOML) for keeping channels in git.

The file mirrors the channel model field for field, with Mirth's names::

    id = "4c2a..."
    name = "ADT to file"

    [properties]
    messageStorageMode = "DEVELOPMENT"

    [source]
    transportName = "TCP Listener"
    responseVariable = "Auto-generate (Destinations completed)"
    [source.properties]
    port = 6661

    [[destinations]]
    name = "Write file"
    transportName = "File Writer"
    [destinations.properties]
    directory = "out"

Source settings (``responseVariable``, ``processingThreads``...) and destination queue settings
(``queueEnabled``, ``retryCount``...) sit directly in the connector's table. Any key the model
does not know is an error that names the file, the key and the keys allowed there.
"""

from __future__ import annotations

import dataclasses
import tomllib
import uuid
from pathlib import Path
from typing import Any, get_type_hints

from pannier.model.channel import (
    Channel,
    ChannelProperties,
    Connector,
    Element,
    Filter,
    MetaDataColumn,
    QueueSettings,
    Script,
    SourceSettings,
    Transformer,
)
from pannier.model.status import StorageMode


class ChannelFormatError(ValueError):
    """A channel file is not valid; the message names the file, the key and what was expected."""


_SCALARS = (bool, int, float, str)


def _check_scalar(where: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise ChannelFormatError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, expected):
        raise ChannelFormatError(f"{where}: expected {expected.__name__}, got {value!r}")
    return value


def _fill(cls: type, data: dict[str, Any], where: str, skip: set[str] = frozenset()) -> Any:  # type: ignore[assignment]
    """Build a flat settings dataclass from ``data``, checking names and scalar types."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - skip
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ChannelFormatError(
                f"{where}: unknown key {key!r}; expected one of: {', '.join(sorted(names))}"
            )
        expected = hints[key]
        if expected in _SCALARS:
            value = _check_scalar(f"{where}.{key}", value, expected)
        kwargs[key] = value
    return cls(**kwargs)


def _script(value: Any, where: str) -> Script:
    if isinstance(value, str):
        return Script(code=value)
    if isinstance(value, dict):
        return _fill(Script, value, where)  # type: ignore[no-any-return]
    raise ChannelFormatError(f"{where}: expected a string or a table with 'code', got {value!r}")


def _elements(value: Any, where: str) -> list[Element]:
    if not isinstance(value, list):
        raise ChannelFormatError(f"{where}: expected an array of tables, got {value!r}")
    elements = []
    for index, item in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(item, dict) or "kind" not in item:
            raise ChannelFormatError(f"{here}: expected a table with a 'kind' key")
        item = dict(item)
        fixed = {k: item.pop(k) for k in ("kind", "name", "enabled", "operator") if k in item}
        element = _fill(Element, fixed, here)
        element.settings = item
        elements.append(element)
    return elements


_CONNECTOR_TABLE_KEYS = {
    "metaDataId",
    "name",
    "transportName",
    "enabled",
    "waitForPrevious",
    "properties",
    "inboundDataType",
    "outboundDataType",
    "inboundProperties",
    "outboundProperties",
    "filter",
    "transformer",
    "responseTransformer",
}


def _connector(data: Any, where: str, mode: str, metadata_id: int) -> Connector:
    if not isinstance(data, dict):
        raise ChannelFormatError(f"{where}: expected a table, got {data!r}")
    settings_cls = SourceSettings if mode == "SOURCE" else QueueSettings
    settings_names = {f.name for f in dataclasses.fields(settings_cls)}
    allowed = _CONNECTOR_TABLE_KEYS | settings_names
    if mode == "SOURCE":
        allowed -= {"metaDataId", "waitForPrevious", "responseTransformer"}
    unknown = set(data) - allowed
    if unknown:
        raise ChannelFormatError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; expected one of: "
            f"{', '.join(sorted(allowed))}"
        )
    if "transportName" not in data:
        raise ChannelFormatError(f"{where}: 'transportName' is required")
    settings = _fill(settings_cls, {k: v for k, v in data.items() if k in settings_names}, where)
    connector = Connector(
        metaDataId=_check_scalar(f"{where}.metaDataId", data.get("metaDataId", metadata_id), int),
        name=_check_scalar(
            f"{where}.name",
            data.get("name", "Source" if mode == "SOURCE" else f"Destination {metadata_id}"),
            str,
        ),
        transportName=_check_scalar(f"{where}.transportName", data["transportName"], str),
        mode=mode,  # type: ignore[arg-type]
        enabled=_check_scalar(f"{where}.enabled", data.get("enabled", True), bool),
        waitForPrevious=_check_scalar(
            f"{where}.waitForPrevious", data.get("waitForPrevious", True), bool
        ),
        inboundDataType=_check_scalar(
            f"{where}.inboundDataType", data.get("inboundDataType", "HL7V2"), str
        ).upper(),
        outboundDataType=_check_scalar(
            f"{where}.outboundDataType",
            data.get("outboundDataType", data.get("inboundDataType", "HL7V2")),
            str,
        ).upper(),
    )
    for key in ("properties", "inboundProperties", "outboundProperties"):
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise ChannelFormatError(f"{where}.{key}: expected a table, got {value!r}")
        setattr(connector, key, dict(value))
    for key, attribute, cls in (
        ("filter", "rules", Filter),
        ("transformer", "steps", Transformer),
        ("responseTransformer", "steps", Transformer),
    ):
        if key in data:
            section = data[key]
            if not isinstance(section, dict) or set(section) - {attribute}:
                raise ChannelFormatError(f"{where}.{key}: expected a table with only {attribute!r}")
            setattr(
                connector,
                key,
                cls(_elements(section.get(attribute, []), f"{where}.{key}.{attribute}")),
            )
    if mode == "SOURCE":
        connector.source = settings
    else:
        connector.queue = settings
    return connector


def channel_from_dict(data: dict[str, Any], where: str = "channel") -> Channel:
    """Build a :class:`Channel` from the parsed contents of a channel file."""
    allowed = {
        "id",
        "name",
        "description",
        "revision",
        "nextMetaDataId",
        "source",
        "destinations",
        "preprocessingScript",
        "postprocessingScript",
        "deployScript",
        "undeployScript",
        "properties",
    }
    unknown = set(data) - allowed
    if unknown:
        raise ChannelFormatError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; expected one of: "
            f"{', '.join(sorted(allowed))}"
        )
    for required in ("name", "source"):
        if required not in data:
            raise ChannelFormatError(f"{where}: {required!r} is required")
    channel_id = _check_scalar(f"{where}.id", data.get("id", ""), str)
    if channel_id:
        try:
            uuid.UUID(channel_id)
        except ValueError:
            raise ChannelFormatError(
                f"{where}.id: expected a UUID such as {uuid.uuid4()}, got {channel_id!r}"
            ) from None
    name = _check_scalar(f"{where}.name", data["name"], str)
    if not name.strip() or len(name) > 40:
        raise ChannelFormatError(f"{where}.name: expected 1 to 40 characters, got {name!r}")

    properties_data = dict(data.get("properties", {}))
    columns = properties_data.pop("metaDataColumns", None)
    mode = properties_data.pop("messageStorageMode", "DEVELOPMENT")
    properties = _fill(
        ChannelProperties,
        properties_data,
        f"{where}.properties",
        skip={"metaDataColumns", "messageStorageMode"},
    )
    try:
        properties.messageStorageMode = StorageMode[str(mode).upper()]
    except KeyError:
        raise ChannelFormatError(
            f"{where}.properties.messageStorageMode: expected one of "
            f"{', '.join(m.name for m in StorageMode)}, got {mode!r}"
        ) from None
    if properties.initialState not in ("STARTED", "STOPPED", "PAUSED"):
        raise ChannelFormatError(
            f"{where}.properties.initialState: expected STARTED, STOPPED or PAUSED, "
            f"got {properties.initialState!r}"
        )
    if columns is not None:
        properties.metaDataColumns = [
            _fill(MetaDataColumn, c, f"{where}.properties.metaDataColumns[{i}]")
            for i, c in enumerate(columns)
        ]

    destinations_data = data.get("destinations", [])
    if not isinstance(destinations_data, list):
        raise ChannelFormatError(f"{where}.destinations: expected an array of tables")
    destinations = [
        _connector(d, f"{where}.destinations[{i}]", "DESTINATION", i + 1)
        for i, d in enumerate(destinations_data)
    ]
    seen: dict[int, str] = {}
    names: set[str] = set()
    for destination in destinations:
        if destination.metaDataId < 1:
            raise ChannelFormatError(
                f"{where}: destination {destination.name!r} has metaDataId "
                f"{destination.metaDataId}; destination ids start at 1"
            )
        if destination.metaDataId in seen:
            raise ChannelFormatError(
                f"{where}: destinations {seen[destination.metaDataId]!r} and "
                f"{destination.name!r} share metaDataId {destination.metaDataId}"
            )
        if destination.name in names:
            raise ChannelFormatError(
                f"{where}: destination name {destination.name!r} is used twice"
            )
        seen[destination.metaDataId] = destination.name
        names.add(destination.name)

    return Channel(
        id=channel_id or str(uuid.uuid4()),
        name=name,
        description=_check_scalar(f"{where}.description", data.get("description", ""), str),
        revision=_check_scalar(f"{where}.revision", data.get("revision", 1), int),
        nextMetaDataId=_check_scalar(f"{where}.nextMetaDataId", data.get("nextMetaDataId", 0), int),
        source=_connector(data["source"], f"{where}.source", "SOURCE", 0),
        destinations=destinations,
        preprocessingScript=_script(
            data.get("preprocessingScript", ""), f"{where}.preprocessingScript"
        ),
        postprocessingScript=_script(
            data.get("postprocessingScript", ""), f"{where}.postprocessingScript"
        ),
        deployScript=_script(data.get("deployScript", ""), f"{where}.deployScript"),
        undeployScript=_script(data.get("undeployScript", ""), f"{where}.undeployScript"),
        properties=properties,
    )


def load_channel_file(path: str | Path) -> Channel:
    """Read one channel file; errors name the file and the offending key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ChannelFormatError(f"{path}: cannot read channel file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ChannelFormatError(f"{path}: not valid TOML: {exc}") from None
    return channel_from_dict(data, where=str(path))
