"""A Mirth 4.5.2 channel (TCP Listener, HL7 v2 filter and mapper, a File Writer and a queued
TCP Sender in two chains) imports, runs end to end, and exports back without losing fields."""

from __future__ import annotations

import trio
from lxml import etree
from pannier.model.mirth_xml import channel_from_xml, channel_to_toml, channel_to_xml
from pannier.testing.datatypes import xml_tree_equal
from pannier_mllp import FrameDecoder, encode_frame, send_mllp

from .conftest import FIXTURES
from .test_end_to_end import query, segments, start

RUNNABLE = FIXTURES / "channels" / "mirth-4.5.2-tcp-hl7-runnable.xml"


def canonical(text: str) -> str:
    parser = etree.XMLParser(remove_blank_text=True)
    return etree.tostring(etree.fromstring(text.encode(), parser)).decode()


def test_the_channel_exports_back_to_the_same_xml() -> None:
    original = RUNNABLE.read_text(encoding="utf-8")
    exported = channel_to_xml(channel_from_xml(original))
    assert xml_tree_equal(canonical(original), canonical(exported))


async def test_the_imported_channel_runs(nursery, tmp_path, hl7_sample) -> None:
    received: list[bytes] = []

    async def emr(stream: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        async for data in stream:
            for payload in decoder.feed(data):
                received.append(payload)
                await stream.send_all(encode_frame(b"MSH|^~\\&|EMR\rMSA|AA|x\r"))

    listeners = await nursery.start(trio.serve_tcp, emr, 0)
    emr_port = listeners[0].socket.getsockname()[1]

    channel = channel_from_xml(RUNNABLE.read_text(encoding="utf-8"))
    channel.source.properties.update(host="127.0.0.1", port="0")
    archive, forward = channel.destinations
    archive.properties["directory"] = str(tmp_path / "archive")
    forward.properties.update(remoteAddress="127.0.0.1", remotePort=str(emr_port))
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.toml").write_text(channel_to_toml(channel), encoding="utf-8")
    config = tmp_path / "pannier.toml"
    config.write_text('[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n')

    engine, port = await start(nursery, config)
    adt = hl7_sample("adt_a01.hl7")
    oru = hl7_sample("oru_r01.hl7")
    acks = await send_mllp("127.0.0.1", port, [adt, oru], timeout=10)
    assert [segments(a)["MSA"][1] for a in acks] == ["AA", "AR"], "the filter accepts ADT only"

    with trio.fail_after(10):
        while not received:
            await trio.sleep(0.05)
    assert received == [adt], "the queued TCP Sender forwarded the ADT to the EMR"
    archived = list((tmp_path / "archive").iterdir())
    assert len(archived) == 1 and archived[0].read_bytes() == adt
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    with trio.fail_after(10):
        while query(engine, f"SELECT STATUS FROM D_MM{n} WHERE MESSAGE_ID = 1 AND ID = 2") != [
            ("S",)
        ]:
            await trio.sleep(0.05)
    assert query(engine, f"SELECT ID, STATUS FROM D_MM{n} WHERE MESSAGE_ID = 1 ORDER BY ID") == [
        (0, "T"),
        (1, "S"),
        (2, "S"),
    ]
    assert query(engine, f"SELECT ID, STATUS FROM D_MM{n} WHERE MESSAGE_ID = 2") == [(0, "F")]
