"""Channel definitions and settings the API keeps in Mirth's tables.

- Channels created through the API live in ``CHANNEL`` as Mirth XML (as Mirth keeps them).
  A channel sent as JSON is also kept in Pannier's own form (its channel file text, in
  ``CONFIGURATION('pannier', 'channel/<id>')``), because Mirth XML cannot carry everything a
  Pannier channel says (a Python script's language, for one); that form is used while its
  revision matches the ``CHANNEL`` row, so an edit made by Java Mirth still wins.
- Per-channel metadata Pannier needs — enabled, last modified, and whether the API created the
  channel — is JSON in ``CONFIGURATION('pannier', 'channelMetadata')``; channel tags in
  ``CONFIGURATION('pannier', 'channelTags')``. Java Mirth never reads category ``pannier``
  (additive), so its own ``core`` rows are left untouched.
- Global scripts in ``SCRIPT(GROUP_ID='Global', ID=Deploy|Undeploy|Preprocessor|
  Postprocessor)``, exactly as Mirth.

Every function here is blocking: call it through ``Store.run_sync``.
"""

from __future__ import annotations

import json
import logging
import tomllib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pannier.model.channel import Channel
from pannier.model.channel_file import ChannelFormatError, channel_from_dict
from pannier.model.mirth_xml import MirthXmlError, channel_from_xml
from pannier.store.store import Store

log = logging.getLogger("pannier.api.library")

CATEGORY = "pannier"
GLOBAL_SCRIPT_GROUP = "Global"
GLOBAL_SCRIPT_IDS = ("Deploy", "Undeploy", "Preprocessor", "Postprocessor")


def get_setting(store: Store, name: str, default: Any) -> Any:
    """A JSON value from ``CONFIGURATION('pannier', name)``."""
    table = store.metadata.tables["CONFIGURATION"]
    with store.engine.connect() as conn:
        value = conn.execute(
            sa.select(table.c.VALUE).where(table.c.CATEGORY == CATEGORY, table.c.NAME == name)
        ).scalar()
    if value is None:
        return default
    try:
        return json.loads(value)
    except ValueError:
        log.warning("CONFIGURATION(%s, %s) is not JSON; ignoring it", CATEGORY, name)
        return default


def put_setting(store: Store, name: str, value: Any) -> None:
    table = store.metadata.tables["CONFIGURATION"]
    text = json.dumps(value, sort_keys=True)
    with store.engine.begin() as conn:
        updated = conn.execute(
            sa.update(table)
            .where(table.c.CATEGORY == CATEGORY, table.c.NAME == name)
            .values(VALUE=text)
        )
        if updated.rowcount == 0:
            conn.execute(sa.insert(table).values(CATEGORY=CATEGORY, NAME=name, VALUE=text))


def channel_metadata(store: Store) -> dict[str, dict[str, Any]]:
    data = get_setting(store, "channelMetadata", {})
    return data if isinstance(data, dict) else {}


def update_channel_metadata(store: Store, channel_id: str, **changes: Any) -> dict[str, Any]:
    data = channel_metadata(store)
    entry = dict(data.get(channel_id, {"enabled": True}))
    entry.update(changes)
    entry["lastModified"] = datetime.now(UTC).isoformat()
    data[channel_id] = entry
    put_setting(store, "channelMetadata", data)
    return entry


def forget_channel_metadata(store: Store, channel_id: str) -> None:
    data = channel_metadata(store)
    if data.pop(channel_id, None) is not None:
        put_setting(store, "channelMetadata", data)


def disabled_ids(store: Store) -> set[str]:
    return {cid for cid, entry in channel_metadata(store).items() if not entry.get("enabled", True)}


def stored_channels(store: Store) -> dict[str, tuple[int, str]]:
    """Every CHANNEL row: id → (revision, Mirth XML)."""
    table = store.metadata.tables["CHANNEL"]
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.ID, table.c.REVISION, table.c.CHANNEL)).all()
    return {str(r.ID).strip(): (int(r.REVISION or 0), str(r.CHANNEL or "")) for r in rows}


def _definition(store: Store, channel_id: str, revision: int, xml: str) -> Channel | None:
    text = get_setting(store, f"channel/{channel_id}", None)
    if isinstance(text, str):
        try:
            channel = channel_from_dict(tomllib.loads(text), f"channel {channel_id}")
        except (ValueError, ChannelFormatError) as exc:
            log.warning("stored channel %s cannot be read: %s", channel_id, exc)
        else:
            if channel.revision == revision:
                return channel
    try:
        return channel_from_xml(xml)
    except (MirthXmlError, ValueError) as exc:
        log.warning("CHANNEL row %s cannot be read: %s", channel_id, exc)
        return None


def stored_definitions(store: Store) -> dict[str, Channel]:
    """Every readable stored channel: id → definition."""
    found = {}
    for channel_id, (revision, xml) in stored_channels(store).items():
        channel = _definition(store, channel_id, revision, xml)
        if channel is not None:
            found[channel_id] = channel
    return found


def read_channel(store: Store, channel_id: str) -> Channel | None:
    """The stored channel ``channel_id``, or None (also when it cannot be read)."""
    row = stored_channels(store).get(channel_id)
    if row is None:
        return None
    return _definition(store, channel_id, *row)


def load_api_channels(store: Store) -> list[Channel]:
    """Channels created through the API, in the order they were created."""
    metadata = channel_metadata(store)
    wanted = [cid for cid, entry in metadata.items() if entry.get("createdBy") == "api"]
    channels = []
    for channel_id in wanted:
        channel = read_channel(store, channel_id)
        if channel is not None:
            channels.append(channel)
    return channels


def write_channel(store: Store, channel: Channel, xml: str, pannier_form: str | None) -> None:
    """Insert or replace the CHANNEL row, and Pannier's own form when given (else drop it:
    the XML is then the whole definition)."""
    if pannier_form is None:
        _delete_setting(store, f"channel/{channel.id}")
    else:
        put_setting(store, f"channel/{channel.id}", pannier_form)
    table = store.metadata.tables["CHANNEL"]
    with store.engine.begin() as conn:
        updated = conn.execute(
            sa.update(table)
            .where(table.c.ID == channel.id)
            .values(NAME=channel.name, REVISION=channel.revision, CHANNEL=xml)
        )
        if updated.rowcount == 0:
            conn.execute(
                sa.insert(table).values(
                    ID=channel.id, NAME=channel.name, REVISION=channel.revision, CHANNEL=xml
                )
            )


def delete_channel(store: Store, channel_id: str) -> None:
    table = store.metadata.tables["CHANNEL"]
    with store.engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.ID == channel_id))
    _delete_setting(store, f"channel/{channel_id}")
    forget_channel_metadata(store, channel_id)


def _delete_setting(store: Store, name: str) -> None:
    table = store.metadata.tables["CONFIGURATION"]
    with store.engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.CATEGORY == CATEGORY, table.c.NAME == name))


def global_scripts(store: Store) -> dict[str, str]:
    table = store.metadata.tables["SCRIPT"]
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(table.c.ID, table.c.SCRIPT).where(table.c.GROUP_ID == GLOBAL_SCRIPT_GROUP)
        ).all()
    scripts = dict.fromkeys(GLOBAL_SCRIPT_IDS, "")
    scripts.update({str(r.ID): str(r.SCRIPT or "") for r in rows})
    return scripts


def put_global_scripts(store: Store, scripts: dict[str, str]) -> None:
    table = store.metadata.tables["SCRIPT"]
    with store.engine.begin() as conn:
        for script_id, text in scripts.items():
            match = (table.c.GROUP_ID == GLOBAL_SCRIPT_GROUP, table.c.ID == script_id)
            updated = conn.execute(sa.update(table).where(*match).values(SCRIPT=text))
            if updated.rowcount == 0:
                conn.execute(
                    sa.insert(table).values(GROUP_ID=GLOBAL_SCRIPT_GROUP, ID=script_id, SCRIPT=text)
                )
