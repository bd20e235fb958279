"""Python filters and transformers in a real channel: HL7 v2 over MLLP, written to files,
with the statuses, content rows and ACKs Mirth would produce."""

from __future__ import annotations

from pathlib import Path

import pytest
from pannier.config import load_config
from pannier.engine import DeployError, Engine
from pannier.model.channel_file import channel_from_dict
from pannier_mllp import send_mllp

from .test_end_to_end import example_channel, query, segments, start, write_config

TRANSFORM = """
[[source.transformer.steps]]
kind = "python"
name = "upper-case family name"
code = "msg['PID.5.1'] = msg['PID.5.1'].upper()"

[[source.transformer.steps]]
kind = "mapper"
variable = "mrn"
mapping = "PID.3.1"
scope = "channel"
"""


def with_source_scripts(text: str, scripts: str, response: str | None = None) -> str:
    if response:
        text = text.replace("Auto-generate (Destinations completed)", response)
    head, tail = text.split("[[destinations]]", 1)
    return head + scripts + "\n[[destinations]]" + tail


async def test_transformer_changes_the_message_and_fills_the_channel_map(
    nursery, tmp_path, hl7_sample
) -> None:
    channel = with_source_scripts(example_channel(), TRANSFORM)
    channel = channel.replace(
        'outputPattern = "${message.messageId}.hl7"', 'outputPattern = "${mrn}.hl7"'
    )
    engine, port = await start(nursery, write_config(tmp_path, channel))
    (ack,) = await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")], timeout=10)
    assert segments(ack)["MSA"][1] == "AA"
    written = tmp_path / "out" / "555-44-3333.hl7"
    assert written.exists(), "the mapper put PID-3.1 in the channel map for the file name"
    assert "|EVERYMAN^Adam^A^III^Mr.|" in written.read_text()
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    (transformed, data_type) = query(
        engine, f"SELECT CONTENT, DATA_TYPE FROM D_MC{n} WHERE METADATA_ID = 0 AND CONTENT_TYPE = 3"
    )[0]
    assert data_type == "XML" and "<PID.5.1>EVERYMAN</PID.5.1>" in transformed
    (encoded,) = query(
        engine, f"SELECT CONTENT FROM D_MC{n} WHERE METADATA_ID = 0 AND CONTENT_TYPE = 4"
    )[0]
    assert "EVERYMAN^Adam" in encoded
    (raw,) = query(engine, f"SELECT CONTENT FROM D_MC{n} WHERE CONTENT_TYPE = 1")[0]
    assert "Everyman^Adam" in raw, "the raw message is kept as received"


async def test_a_source_filter_rejects_with_ar_and_counts_filtered(
    nursery, tmp_path, hl7_sample
) -> None:
    rule = """
[[source.filter.rules]]
kind = "rule"
name = "results only"
field = "MSH.9.1"
condition = "EQUALS"
values = ["ORU"]
"""
    channel = with_source_scripts(
        example_channel(), rule, "Auto-generate (After source transformer)"
    )
    engine, port = await start(nursery, write_config(tmp_path, channel))
    acks = await send_mllp(
        "127.0.0.1", port, [hl7_sample("adt_a01.hl7"), hl7_sample("oru_r01.hl7")], timeout=10
    )
    assert [segments(a)["MSA"][1] for a in acks] == ["AR", "AA"]
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    assert query(engine, f"SELECT MESSAGE_ID, ID, STATUS FROM D_MM{n} ORDER BY 1, 2") == [
        (1, 0, "F"),
        (2, 0, "T"),
        (2, 1, "S"),
    ]
    for deployed in engine.channels.values():
        await deployed._flush_statistics()
    assert query(
        engine, f"SELECT RECEIVED, FILTERED, SENT FROM D_MS{n} WHERE METADATA_ID IS NULL"
    ) == [(2, 1, 1)]


async def test_a_failing_script_is_the_messages_error_not_the_channels(
    nursery, tmp_path, hl7_sample
) -> None:
    step = '''
[[source.transformer.steps]]
kind = "python"
name = "divide"
code = """
total = 0
ratio = 1 / total
"""
'''
    engine, port = await start(
        nursery, write_config(tmp_path, with_source_scripts(example_channel(), step))
    )
    acks = await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")] * 2, timeout=10)
    assert [segments(a)["MSA"][1] for a in acks] == ["AE", "AE"]
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    (error,) = query(
        engine, f"SELECT CONTENT FROM D_MC{n} WHERE CONTENT_TYPE = 12 AND MESSAGE_ID = 1"
    )[0]
    assert "ZeroDivisionError" in error and "divide" in error and "line 3" in error


async def test_a_destination_filter_skips_only_that_destination(
    nursery, tmp_path, hl7_sample
) -> None:
    channel = (
        example_channel()
        + """
[[destinations.filter.rules]]
kind = "python"
code = "source_map['remoteAddress'] == '10.9.9.9'"
"""
    )
    engine, port = await start(nursery, write_config(tmp_path, channel))
    (ack,) = await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")], timeout=10)
    assert segments(ack)["MSA"][1] == "AR", "its only destination filtered it"
    assert not (tmp_path / "out").exists()
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    assert query(engine, f"SELECT ID, STATUS, SEND_ATTEMPTS FROM D_MM{n} ORDER BY ID") == [
        (0, "T", 1),
        (1, "F", 0),
    ]


@pytest.mark.parametrize(
    ("element", "message"),
    [
        ({"kind": "python", "name": "broken", "code": "return ("}, "'broken'"),
        ({"kind": "python", "callable": "no_such_module:fn"}, "cannot import 'no_such_module:fn'"),
        ({"kind": "javascript", "script": "return true;"}, "JavaScript script engine plugin"),
        ({"kind": "rule", "field": "PID.3", "condition": "LIKE"}, "condition 'LIKE'"),
    ],
)
def test_scripts_that_cannot_run_stop_the_deploy_naming_the_element(
    tmp_path: Path, element, message
) -> None:
    config = tmp_path / "pannier.toml"
    config.write_text("[channels]\npaths = []\n[server]\ndata_dir = 'var'\n")
    engine = Engine(load_config(config, environ={}))
    channel = channel_from_dict(
        {
            "name": "c",
            "source": {"transportName": "TCP Listener", "filter": {"rules": [element]}},
            "destinations": [{"name": "d", "transportName": "File Writer"}],
        }
    )
    with pytest.raises(DeployError, match=message):
        engine.prepare(channel)


async def test_channel_scripts_preprocess_postprocess_deploy_and_undeploy(
    nursery, tmp_path, hl7_sample
) -> None:
    marker = tmp_path / "lifecycle.log"
    scripts = f'''
preprocessingScript = """
channel_map["original_length"] = len(message)
return message.replace("PANNIER|CLINIC", "PANNIER|WARD7")
"""
postprocessingScript = """
return "processed " + channel_map["mrn"] + " of " + str(channel_map["original_length"])
"""
deployScript = "open({str(marker)!r}, 'a').write('deployed ' + channel_name + chr(10))"
undeployScript = "open({str(marker)!r}, 'a').write('undeployed' + chr(10))"
'''
    channel = with_source_scripts(example_channel(), TRANSFORM, "Postprocessor")
    channel = channel.replace("[properties]", scripts + "\n[properties]", 1)
    engine, port = await start(nursery, write_config(tmp_path, channel))
    assert marker.read_text() == "deployed ADT to file\n"
    message = hl7_sample("adt_a01.hl7")
    (response,) = await send_mllp("127.0.0.1", port, [message], timeout=10)
    assert response.decode() == f"processed 555-44-3333 of {len(message)}"
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    (processed,) = query(engine, f"SELECT CONTENT FROM D_MC{n} WHERE CONTENT_TYPE = 2")[0]
    assert "PANNIER|WARD7" in processed
    assert "PANNIER|WARD7" in (tmp_path / "out" / "1.hl7").read_text()
    engine.request_stop()
    await engine.stopped.wait()
    assert marker.read_text() == "deployed ADT to file\nundeployed\n"


async def test_a_failing_postprocessor_is_stored_and_the_message_still_completes(
    nursery, tmp_path, hl7_sample
) -> None:
    channel = example_channel().replace(
        "[properties]",
        "postprocessingScript = \"raise RuntimeError('audit down')\"\n[properties]",
        1,
    )
    engine, port = await start(nursery, write_config(tmp_path, channel))
    (ack,) = await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")], timeout=10)
    assert segments(ack)["MSA"][1] == "AA"
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    assert query(engine, f"SELECT STATUS, ERROR_CODE FROM D_MM{n} WHERE ID = 0") == [("T", 2)]
    (error,) = query(engine, f"SELECT CONTENT FROM D_MC{n} WHERE CONTENT_TYPE = 13")[0]
    assert "RuntimeError: audit down" in error


async def test_scripts_share_state_through_the_map_backend(nursery, tmp_path, hl7_sample) -> None:
    steps = '''
[[source.filter.rules]]
kind = "python"
code = "configuration_map.get('accepting', 'yes') == 'yes'"

[[source.transformer.steps]]
kind = "python"
code = """
global_map["seen"] = global_map.get("seen", 0) + 1
global_map.pop("stale", None)
"""

[[source.transformer.steps]]
kind = "mapper"
variable = "last_mrn"
mapping = "PID.3.1"
scope = "globalChannel"
'''
    channel = with_source_scripts(
        example_channel(), steps, "Auto-generate (After source transformer)"
    )
    engine, port = await start(nursery, write_config(tmp_path, channel))
    backend = engine.map_backend
    await backend.put("global", "stale", "x")
    acks = await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")] * 2, timeout=10)
    assert [segments(a)["MSA"][1] for a in acks] == ["AA", "AA"]
    assert await backend.items("global") == {"seen": 2}
    (channel_id,) = engine.channels
    assert await backend.get(f"global_channel:{channel_id}", "last_mrn") == "555-44-3333"
    await backend.put("configuration", "accepting", "no")
    (ack,) = await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")], timeout=10)
    assert segments(ack)["MSA"][1] == "AR", "the filter read the configuration map"


async def test_a_response_transformer_reads_the_ack_and_sets_the_status(
    nursery, tmp_path, hl7_sample
) -> None:
    import trio
    from pannier_mllp import FrameDecoder, encode_frame

    async def downstream(stream: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        async for data in stream:
            for _payload in decoder.feed(data):
                await stream.send_all(encode_frame(b"MSH|^~\\&|EMR\rMSA|AE|x|bad patient\r"))

    listeners = await nursery.start(trio.serve_tcp, downstream, 0)
    emr = listeners[0].socket.getsockname()[1]
    channel = (
        example_channel().split("[[destinations]]")[0]
        + f'''
[[destinations]]
name = "EMR"
transportName = "TCP Sender"
[destinations.properties]
remoteAddress = "127.0.0.1"
remotePort = "{emr}"

[[destinations.responseTransformer.steps]]
kind = "python"
code = """
if msg["MSA.1"] != "AA":
    response.status = "E"
    response.error = "EMR refused: " + msg["MSA.3"]
msg["MSA.3"] = msg["MSA.3"].upper()
"""
'''
    )
    engine, port = await start(nursery, write_config(tmp_path, channel))
    (ack,) = await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")], timeout=10)
    assert segments(ack)["MSA"][1] == "AE", "the transformed status reaches the client"
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    assert query(engine, f"SELECT STATUS, ERROR_CODE FROM D_MM{n} WHERE ID = 1") == [("E", 1)]
    contents = dict(
        query(engine, f"SELECT CONTENT_TYPE, CONTENT FROM D_MC{n} WHERE METADATA_ID = 1")
    )
    assert "MSA|AE|x|BAD PATIENT" in contents[7], "RESPONSE_TRANSFORMED"
    assert "<status>ERROR</status>" in contents[8], "PROCESSED_RESPONSE"
    assert "EMR refused: bad patient" in contents[12]


async def test_the_channel_map_is_stored_with_each_connector_message(
    nursery, tmp_path, hl7_sample
) -> None:
    engine, port = await start(
        nursery, write_config(tmp_path, with_source_scripts(example_channel(), TRANSFORM))
    )
    await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")], timeout=10)
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    stored = query(
        engine,
        f"SELECT METADATA_ID, CONTENT FROM D_MC{n} WHERE CONTENT_TYPE = 10 ORDER BY METADATA_ID",
    )
    assert [m for m, _ in stored] == [0, 1]
    assert all("<string>mrn</string>" in c and "555-44-3333" in c for _, c in stored)
