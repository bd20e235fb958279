"""Two things Mirth's own tools read from the message tables, checked against Mirth's rules:

* ``CHAIN_ID``/``ORDER_ID`` (mirth-compat §2.3): the source row is 0/0; destination chains are
  numbered from 1 in channel order, a ``waitForPrevious = false`` destination starting the
  next one, and destinations are numbered from 1 within their chain
  (``Channel.addDestinationChainProvider``, ``DestinationChainProvider.addDestination``).
* custom metadata (``D_MCM``): a column's ``mappingName`` is looked up in the connector map,
  then the channel map — never the source map (``MetaDataReplacer``) — for the source and for
  each destination, and a connector message with no value gets no row.
"""

from __future__ import annotations

from pannier_mllp import send_mllp

from .test_end_to_end import query, start, write_config

CHANNEL = """
id = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
name = "Chains and metadata"

[properties]
messageStorageMode = "DEVELOPMENT"
[[properties.metaDataColumns]]
name = "SOURCE"
mappingName = "mirth_source"
[[properties.metaDataColumns]]
name = "MRN"
mappingName = "mrn"
[[properties.metaDataColumns]]
name = "ORIGIN"
mappingName = "remoteAddress"
[[properties.metaDataColumns]]
name = "DEST"
mappingName = "dest"

[source]
transportName = "TCP Listener"
inboundDataType = "HL7V2"
responseVariable = "Auto-generate (Destinations completed)"
[source.properties]
host = "127.0.0.1"
port = 0
[[source.transformer.steps]]
kind = "mapper"
variable = "mrn"
mapping = "PID.3.1"
scope = "channel"

[[destinations]]
name = "One"
transportName = "File Writer"
[destinations.properties]
directory = "one"

[[destinations]]
name = "Two"
transportName = "File Writer"
waitForPrevious = false
[destinations.properties]
directory = "two"
[[destinations.transformer.steps]]
kind = "python"
code = "connector_map['dest'] = 'two'"

[[destinations]]
name = "Three"
transportName = "File Writer"
[destinations.properties]
directory = "three"
"""


async def test_chain_and_order_ids_and_custom_metadata_follow_mirth(
    nursery, tmp_path, hl7_sample
) -> None:
    engine, port = await start(nursery, write_config(tmp_path, CHANNEL))
    (ack,) = await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")], timeout=10)
    assert b"MSA|AA|" in ack
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    assert query(
        engine, f"SELECT ID, CONNECTOR_NAME, CHAIN_ID, ORDER_ID, STATUS FROM D_MM{n} ORDER BY ID"
    ) == [
        (0, "Source", 0, 0, "T"),
        (1, "One", 1, 1, "S"),
        (2, "Two", 2, 1, "S"),
        (3, "Three", 2, 2, "S"),
    ]
    (source_map,) = query(
        engine, f"SELECT CONTENT FROM D_MC{n} WHERE METADATA_ID = 0 AND CONTENT_TYPE = 15"
    )[0]
    assert "<string>remoteAddress</string>" in source_map, "the key exists, in the source map"
    assert query(
        engine, f"SELECT METADATA_ID, SOURCE, MRN, ORIGIN, DEST FROM D_MCM{n} ORDER BY METADATA_ID"
    ) == [
        (0, "GOODHEALTH", "555-44-3333", None, None),
        (1, None, "555-44-3333", None, None),
        (2, None, "555-44-3333", None, "two"),
        (3, None, "555-44-3333", None, None),
    ]
