"""Destination queues: while the destination cannot deliver, messages are acknowledged and
wait as QUEUED; once it can, they are delivered in order, also across a restart."""

from __future__ import annotations

import pytest
import trio
from pannier_mllp import send_mllp

from .test_end_to_end import example_channel, query, segments, start, write_config
from .test_queue_threads import write_db_config

QUEUED = """
queueEnabled = true
retryIntervalMillis = 100
"""


def queued_channel(extra: str = "") -> str:
    channel = example_channel(directory="out")
    channel = channel.replace(
        'outputPattern = "${message.messageId}.hl7"', 'outputPattern = "all.hl7"'
    )
    channel = channel.replace("outputAppend = false", "outputAppend = true")
    return channel.replace(
        'transportName = "File Writer"\n', 'transportName = "File Writer"\n' + QUEUED + extra
    )


def control_ids(text: str) -> list[str]:
    return [line.split("|")[9] for line in text.split("\r") if line.startswith("MSH|")]


def messages(hl7_sample, count: int) -> list[bytes]:
    template = hl7_sample("adt_a01.hl7")
    return [template.replace(b"MSG00001", f"Q{i:03d}".encode()) for i in range(count)]


async def wait_for(predicate, seconds: float = 15) -> None:
    with trio.fail_after(seconds):
        while not predicate():
            await trio.sleep(0.05)


async def test_messages_queue_while_down_and_are_delivered_in_order(
    nursery, tmp_path, hl7_sample
) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output directory should be: every write fails")
    engine, port = await start(nursery, write_config(tmp_path, queued_channel()))
    acks = await send_mllp("127.0.0.1", port, messages(hl7_sample, 5), timeout=10)
    assert [segments(a)["MSA"][1] for a in acks] == ["AA"] * 5, "queued counts as accepted"
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    await trio.sleep(0.5)  # several retries fail meanwhile
    assert {s for (s,) in query(engine, f"SELECT STATUS FROM D_MM{n} WHERE ID = 1")} == {"Q"}
    (attempts,) = query(
        engine, f"SELECT SEND_ATTEMPTS FROM D_MM{n} WHERE ID = 1 AND MESSAGE_ID = 1"
    )[0]
    assert attempts >= 2, "the head of the queue is retried"

    blocker.unlink()  # the downstream comes back
    written = tmp_path / "out" / "all.hl7"
    await wait_for(
        lambda: written.exists() and len(control_ids(written.read_bytes().decode())) == 5
    )
    assert control_ids(written.read_bytes().decode()) == [f"Q{i:03d}" for i in range(5)]
    await wait_for(
        lambda: {s for (s,) in query(engine, f"SELECT STATUS FROM D_MM{n} WHERE ID = 1")} == {"S"}
    )
    assert query(
        engine, f"SELECT COUNT(*) FROM D_MC{n} WHERE METADATA_ID = 1 AND CONTENT_TYPE = 6"
    ) == [(5,)], "each response stored once"
    for deployed in engine.channels.values():
        await deployed._flush_statistics()
    assert query(engine, f"SELECT SENT FROM D_MS{n} WHERE METADATA_ID IS NULL") == [(5,)]


async def test_a_queue_survives_a_restart(tmp_path, hl7_sample) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("blocked")
    config = write_config(tmp_path, queued_channel())
    async with trio.open_nursery() as first:
        engine, port = await start(first, config)
        await send_mllp("127.0.0.1", port, messages(hl7_sample, 3), timeout=10)
        engine.request_stop()
    blocker.unlink()
    async with trio.open_nursery() as second:
        engine, _port = await start(second, config)
        written = tmp_path / "out" / "all.hl7"
        await wait_for(
            lambda: written.exists() and len(control_ids(written.read_bytes().decode())) == 3
        )
        assert control_ids(written.read_bytes().decode()) == ["Q000", "Q001", "Q002"]
        engine.request_stop()


async def test_without_a_queue_a_failed_write_is_an_error(nursery, tmp_path, hl7_sample) -> None:
    (tmp_path / "out").write_text("blocked")
    channel = example_channel(directory="out")
    engine, port = await start(nursery, write_config(tmp_path, channel))
    (ack,) = await send_mllp("127.0.0.1", port, messages(hl7_sample, 1), timeout=10)
    assert segments(ack)["MSA"][1] == "AE"
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    assert query(engine, f"SELECT STATUS FROM D_MM{n} WHERE ID = 1") == [("E",)]


async def test_with_rotate_others_overtake_a_message_that_keeps_failing(
    nursery, tmp_path, hl7_sample
) -> None:
    """The first message goes to a directory that cannot exist; with rotate the queue moves
    on and delivers the rest, without it they would wait behind the first."""
    (tmp_path / "Q000").write_text("a file where the directory Q000 should be")
    steps = """
[[source.transformer.steps]]
kind = "mapper"
variable = "target"
mapping = "MSH.10"
scope = "channel"
"""
    channel = queued_channel("rotate = true\n").replace(
        'directory = "out"', 'directory = "${target}"'
    )
    head, tail = channel.split("[[destinations]]", 1)
    engine, port = await start(
        nursery, write_config(tmp_path, head + steps + "\n[[destinations]]" + tail)
    )
    await send_mllp("127.0.0.1", port, messages(hl7_sample, 4), timeout=10)
    await wait_for(lambda: all((tmp_path / f"Q00{i}" / "all.hl7").exists() for i in (1, 2, 3)))
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    await wait_for(
        lambda: (
            query(
                engine, f"SELECT MESSAGE_ID, STATUS FROM D_MM{n} WHERE ID = 1 ORDER BY MESSAGE_ID"
            )
            == [(1, "Q"), (2, "S"), (3, "S"), (4, "S")]
        )
    )


async def test_with_the_source_queue_on_the_client_is_answered_before_processing(
    nursery, tmp_path, hl7_sample
) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("blocked: the destination fails, but the ACK does not wait for it")
    channel = example_channel(directory="out").replace(
        'responseVariable = "Auto-generate (Destinations completed)"',
        'responseVariable = "Auto-generate (Before processing)"\nrespondAfterProcessing = false',
    )
    engine, port = await start(nursery, write_config(tmp_path, channel))
    acks = await send_mllp("127.0.0.1", port, messages(hl7_sample, 3), timeout=10)
    assert [segments(a)["MSA"][1] for a in acks] == ["AA"] * 3
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    await wait_for(
        lambda: query(engine, f"SELECT COUNT(*) FROM D_M{n} WHERE PROCESSED = 1") == [(3,)]
    )
    assert {s for (s,) in query(engine, f"SELECT STATUS FROM D_MM{n} WHERE ID = 1")} == {"E"}


def test_the_source_queue_only_allows_responses_it_can_give(tmp_path) -> None:
    from pannier.config import load_config
    from pannier.engine import DeployError, Engine
    from pannier.model.channel_file import channel_from_dict

    config = tmp_path / "pannier.toml"
    config.write_text("[channels]\npaths = []\n")
    engine = Engine(load_config(config, environ={}))
    channel = channel_from_dict(
        {
            "name": "c",
            "source": {
                "transportName": "TCP Listener",
                "respondAfterProcessing": False,
                "responseVariable": "Auto-generate (Destinations completed)",
            },
            "destinations": [{"name": "d", "transportName": "File Writer"}],
        }
    )
    with pytest.raises(DeployError, match="source queue on"):
        engine.prepare(channel)


def sent_pattern(engine, n: int) -> str:
    (sent,) = query(
        engine, f"SELECT CONTENT FROM D_MC{n} WHERE METADATA_ID = 1 AND CONTENT_TYPE = 5"
    )[0]
    return sent.split("<outputPattern>", 1)[1].split("</outputPattern>", 1)[0]


def attempts(engine, n: int) -> int:
    return query(engine, f"SELECT SEND_ATTEMPTS FROM D_MM{n} WHERE ID = 1")[0][0] or 0


@pytest.mark.parametrize("regenerate", [False, True])
async def test_regenerate_template_renders_the_properties_again_on_each_retry(
    nursery, tmp_path, hl7_sample, regenerate, db_url
) -> None:
    """A file name made of ``${UUID}``: without regenerateTemplate the retry writes the name
    rendered when the message was queued; with it, each attempt renders a new one."""
    blocker = tmp_path / "out"
    blocker.write_text("blocked")
    channel = queued_channel(f"regenerateTemplate = {str(regenerate).lower()}\n").replace(
        'outputPattern = "all.hl7"', 'outputPattern = "${UUID}.hl7"'
    )
    engine, port = await start(nursery, write_db_config(tmp_path, channel, db_url))
    await send_mllp("127.0.0.1", port, messages(hl7_sample, 1), timeout=10)
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    await wait_for(lambda: attempts(engine, n) >= 1)
    queued_name = sent_pattern(engine, n)
    blocker.unlink()
    await wait_for(lambda: blocker.is_dir() and any(blocker.iterdir()))
    (written,) = [p.name for p in blocker.iterdir()]
    if regenerate:
        assert written != queued_name, "rendered again for the attempt that succeeded"
    else:
        assert written == queued_name, "the properties stored when queued are reused"
    await wait_for(lambda: query(engine, f"SELECT STATUS FROM D_MM{n} WHERE ID = 1") == [("S",)])
    assert sent_pattern(engine, n) == written, "SENT content holds what was really sent"


RUN_COUNTER = '''
[[destinations.transformer.steps]]
kind = "python"
code = """
global_map["runs"] = global_map.get("runs", 0) + 1
channel_map["run"] = global_map["runs"]
"""
'''


@pytest.mark.parametrize("include", [False, True])
async def test_include_filter_transformer_runs_the_transformer_on_every_queued_attempt(
    nursery, tmp_path, hl7_sample, include, db_url
) -> None:
    """The destination transformer counts its runs into the file name: run once in the
    pipeline, or (includeFilterTransformer) once per queued attempt, never in the pipeline."""
    blocker = tmp_path / "out"
    blocker.write_text("blocked")
    settings = f"regenerateTemplate = true\nincludeFilterTransformer = {str(include).lower()}\n"
    channel = (
        queued_channel(settings)
        .replace('outputPattern = "all.hl7"', 'outputPattern = "run-${run}.hl7"')
        .replace(
            'messageStorageMode = "DEVELOPMENT"',
            'messageStorageMode = "DEVELOPMENT"\n'
            '[[properties.metaDataColumns]]\nname = "RUN"\nmappingName = "run"',
        )
    )
    engine, port = await start(nursery, write_db_config(tmp_path, channel + RUN_COUNTER, db_url))
    await send_mllp("127.0.0.1", port, messages(hl7_sample, 1), timeout=10)
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    await wait_for(lambda: attempts(engine, n) >= 2)
    blocker.unlink()
    await wait_for(lambda: query(engine, f"SELECT STATUS FROM D_MM{n} WHERE ID = 1") == [("S",)])
    (written,) = [p.name for p in blocker.iterdir()]
    quote = "`" if "mysql" in db_url else '"'  # Mirth quotes custom metadata columns
    ((run_column,),) = query(
        engine, f"SELECT {quote}RUN{quote} FROM D_MCM{n} WHERE METADATA_ID = 1"
    )
    assert written == f"run-{run_column}.hl7", "custom metadata of the run that was sent"
    if include:
        final = attempts(engine, n)
        assert final >= 3
        assert written == f"run-{final}.hl7", "the transformer ran for each attempt"
        (stored_map,) = query(
            engine, f"SELECT CONTENT FROM D_MC{n} WHERE METADATA_ID = 1 AND CONTENT_TYPE = 10"
        )[0]
        assert f"<int>{final}</int>" in stored_map, "its channel map is stored again"
    else:
        assert written == "run-1.hl7", "the transformer ran once, before queueing"


OPEN_FILTER = """
[[destinations.filter.rules]]
kind = "python"
code = "global_map.get('open', 'yes') == 'yes'"
"""


@pytest.mark.parametrize("include", [False, True])
async def test_include_filter_transformer_filters_a_queued_message_on_retry(
    nursery, tmp_path, hl7_sample, include
) -> None:
    """The filter accepts when the message is queued and rejects by the time it is retried:
    only with includeFilterTransformer is the verdict taken again (FILTERED, nothing sent)."""
    blocker = tmp_path / "out"
    blocker.write_text("blocked")
    settings = f"regenerateTemplate = true\nincludeFilterTransformer = {str(include).lower()}\n"
    engine, port = await start(
        nursery, write_config(tmp_path, queued_channel(settings) + OPEN_FILTER)
    )
    await send_mllp("127.0.0.1", port, messages(hl7_sample, 1), timeout=10)
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    await wait_for(lambda: attempts(engine, n) >= 1)
    await engine.map_backend.put("global", "open", "no")
    blocker.unlink()
    final = "F" if include else "S"
    await wait_for(lambda: query(engine, f"SELECT STATUS FROM D_MM{n} WHERE ID = 1") == [(final,)])
    assert (blocker / "all.hl7").exists() == (not include)
