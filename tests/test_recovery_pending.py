"""Recovery of a destination left PENDING (status P: Java Mirth sent it and stored the
response, then stopped before the response transformer finished). As Mirth's RecoveryTask,
the next start never sends it again: it runs the response transformer on the stored response
and stores the outcome — for an unfinished message and for an already processed one."""

from __future__ import annotations

import pytest
import trio
from pannier_mllp import send_mllp

from .test_end_to_end import example_channel, query, start, write_config

RESPONSE_TRANSFORMER = '''
[[destinations.responseTransformer.steps]]
kind = "python"
code = """
if response.message == "refused":
    response.status = "E"
    response.error = "downstream refused the message"
"""
'''

STORED_RESPONSE = "<response><status>SENT</status><message>refused</message></response>"


@pytest.mark.parametrize("processed", [False, True])
async def test_a_pending_destination_gets_its_response_transformer_not_a_second_send(
    tmp_path, hl7_sample, processed
) -> None:
    config = write_config(tmp_path, example_channel() + RESPONSE_TRANSFORMER)
    async with trio.open_nursery() as first:
        engine, port = await start(first, config)
        await send_mllp("127.0.0.1", port, [hl7_sample("adt_a01.hl7")], timeout=10)
        engine.request_stop()
    n = query(engine, "SELECT LOCAL_CHANNEL_ID FROM D_CHANNELS")[0][0]
    (written,) = (tmp_path / "out").iterdir()
    written.unlink()
    # What Java Mirth leaves behind when it stops between sending and the response
    # transformer: the destination PENDING, with its response stored.
    with engine.store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE D_MM{n} SET STATUS = 'P' WHERE ID = 1")
        conn.exec_driver_sql(f"UPDATE D_M{n} SET PROCESSED = {int(processed)}")
        conn.exec_driver_sql(
            f"UPDATE D_MC{n} SET CONTENT = '{STORED_RESPONSE}' "
            f"WHERE METADATA_ID = 1 AND CONTENT_TYPE = 6"
        )
    async with trio.open_nursery() as second:
        engine, _ = await start(second, config)
        (deployed,) = engine.channels.values()
        assert deployed.recovered == 1
        assert list((tmp_path / "out").iterdir()) == [], "the file is not written again"
        assert query(engine, f"SELECT STATUS, ERROR_CODE FROM D_MM{n} WHERE ID = 1") == [
            ("E", 1)
        ], "the response transformer's verdict on the stored response"
        assert query(engine, f"SELECT PROCESSED FROM D_M{n}") == [(1,)]
        (error,) = query(
            engine, f"SELECT CONTENT FROM D_MC{n} WHERE METADATA_ID = 1 AND CONTENT_TYPE = 12"
        )[0]
        assert error == "downstream refused the message"
        engine.request_stop()
