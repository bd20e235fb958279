"""``pannier send``, the ``send_mllp`` client and the plugin's registration."""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import trio
from pannier import CliCommand, RawMessage
from pannier_mllp import MLLPClientError, send_mllp
from pannier_mllp import plugin as mllp_plugin
from pannier_mllp.cli import SEND_COMMAND, hl7_message_bytes, parse_host_port


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pannier send")
    SEND_COMMAND.configure(parser)
    return parser.parse_args(argv)


async def run_command(*argv: str) -> int:
    # The command calls trio.run itself, so it runs in a worker thread here.
    return await trio.to_thread.run_sync(SEND_COMMAND.run, parse(*argv))


def echo_ack(raw: RawMessage) -> str:
    text = str(raw.content)
    control_id = text.split("\r")[0].split("|")[9] if text.startswith("MSH") else "?"
    return f"MSH|^~\\&|PANNIER|||||ACK\rMSA|AA|{control_id}\r"


# -- the command end to end -----------------------------------------------------------------------


async def test_send_files_end_to_end(
    listen: Any, recorder_factory: Any, fixtures_dir: Path, tmp_path: Path, capfd: Any
) -> None:
    recorder = recorder_factory(respond=echo_ack)
    running = await listen(recorder)
    lf_file = tmp_path / "lf.hl7"
    lf_file.write_bytes(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|LF1|P|2.5\nPID|1||9\n\n")
    adt = fixtures_dir / "adt_a01.hl7"
    code = await run_command("--mllp", f"127.0.0.1:{running.port}", str(adt), str(lf_file))
    out, err = capfd.readouterr()
    assert code == 0, err
    assert err == ""
    assert f"==> {adt} <==\nMSH|^~\\&|PANNIER|||||ACK\nMSA|AA|" in out
    assert f"==> {lf_file} <==\nMSH|^~\\&|PANNIER|||||ACK\nMSA|AA|LF1\n" in out
    assert "\r" not in out
    sent = [m.content for m in recorder.messages]
    assert sent[0] == adt.read_bytes().decode("utf-8")
    assert sent[1] == "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|LF1|P|2.5\rPID|1||9\r"


async def test_single_file_prints_only_the_response(
    listen: Any, recorder_factory: Any, fixtures_dir: Path, capfd: Any
) -> None:
    running = await listen(recorder_factory(respond=lambda raw: "MSH|x\rMSA|AA|1\r"))
    code = await run_command(
        "--mllp", f"localhost:{running.port}", str(fixtures_dir / "oru_r01.hl7")
    )
    out, _ = capfd.readouterr()
    assert code == 0
    assert out == "MSH|x\nMSA|AA|1\n"


async def test_refused_connection(tmp_path: Path, capfd: Any) -> None:
    message = tmp_path / "m.hl7"
    message.write_text("MSH|^~\\&|x\r")
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = await run_command("--mllp", f"127.0.0.1:{port}", str(message))
    out, err = capfd.readouterr()
    assert code == 1
    assert f"could not connect to 127.0.0.1:{port}: Connection refused" in err
    assert "0 of 1 response(s) received" in err
    assert "Traceback" not in out + err


async def test_missing_response_is_exit_code_1(
    listen: Any, recorder_factory: Any, tmp_path: Path, capfd: Any
) -> None:
    answers = iter(["ACK1", None])
    running = await listen(recorder_factory(respond=lambda raw: next(answers)))
    files = []
    for index in range(2):
        files.append(tmp_path / f"{index}.hl7")
        files[-1].write_text(f"MSH|^~\\&|{index}\r")
    code = await run_command(
        "--timeout", "0.3", "--mllp", f"127.0.0.1:{running.port}", *map(str, files)
    )
    out, err = capfd.readouterr()
    assert code == 1
    assert "ACK1" in out
    assert "no response from 127.0.0.1" in err and "to message 2 within 0.3 s" in err
    assert "1 of 2 response(s) received" in err


async def test_unreadable_file_sends_nothing(
    listen: Any, recorder_factory: Any, tmp_path: Path, capfd: Any
) -> None:
    recorder = recorder_factory()
    running = await listen(recorder)
    good = tmp_path / "good.hl7"
    good.write_text("MSH|^~\\&|x\r")
    empty = tmp_path / "empty.hl7"
    empty.write_text("\n\n")
    missing = tmp_path / "missing.hl7"
    code = await run_command(
        "--mllp", f"127.0.0.1:{running.port}", str(good), str(missing), str(empty), str(tmp_path)
    )
    out, err = capfd.readouterr()
    assert code == 1
    assert f"cannot read {missing}: No such file or directory" in err
    assert f"cannot read {tmp_path}: Is a directory" in err
    assert f"{empty} is empty" in err
    assert "nothing was sent" in err
    assert "Traceback" not in out + err
    assert recorder.messages == []


@pytest.mark.parametrize(
    "address",
    ["localhost", "localhost:", ":6661", "host:abc", "h:0", "h:70000", "::1:6661", "[::1]6661"],
)
def test_bad_address(address: str, tmp_path: Path, capsys: Any) -> None:
    code = SEND_COMMAND.run(parse("--mllp", address, str(tmp_path / "x.hl7")))
    err = capsys.readouterr().err
    assert code == 1
    assert f"pannier send: bad address {address!r}: expected HOST:PORT" in err
    assert "Traceback" not in err


def test_parse_host_port() -> None:
    assert parse_host_port("localhost:6661") == ("localhost", 6661)
    assert parse_host_port(" 10.0.0.1:1 ") == ("10.0.0.1", 1)
    assert parse_host_port("[::1]:6661") == ("::1", 6661)


def test_hl7_message_bytes() -> None:
    assert hl7_message_bytes(b"MSH|1\nPID|2\n") == b"MSH|1\rPID|2\r"
    assert hl7_message_bytes(b"MSH|1\r\nPID|2\r\n\r\n") == b"MSH|1\rPID|2\r"
    assert hl7_message_bytes(b"MSH|1\rPID|2") == b"MSH|1\rPID|2\r"
    assert hl7_message_bytes(b"\xef\xbb\xbfMSH|\xc3\xa9\n") == b"MSH|\xc3\xa9\r"
    assert hl7_message_bytes(b"\n\r\n") == b""


def test_fixtures_are_already_cr_delimited(fixtures_dir: Path) -> None:
    for name in ("adt_a01.hl7", "oru_r01.hl7", "batch.hl7"):
        data = (fixtures_dir / name).read_bytes()
        assert hl7_message_bytes(data) == data


# -- the client -----------------------------------------------------------------------------------


async def test_send_mllp_many_payloads(listen: Any, recorder_factory: Any) -> None:
    running = await listen(recorder_factory(respond=lambda raw: f"R{raw.content}"))
    payloads = [b"%d" % i for i in range(50)]
    responses = await send_mllp("127.0.0.1", running.port, payloads, timeout=5)
    assert responses == [b"R%d" % i for i in range(50)]


async def test_send_mllp_refuses_unframeable_payload(listen: Any) -> None:
    running = await listen()
    with pytest.raises(MLLPClientError, match="message 2 cannot be sent"):
        await send_mllp("127.0.0.1", running.port, [b"ok", b"bad\x1c\x0d"], timeout=5)


async def test_send_mllp_reports_partial_results(listen: Any, recorder_factory: Any) -> None:
    running = await listen(recorder_factory(), keepConnectionOpen=False)
    # The listener closes after one message (with frame 2 unread: a reset or a clean close).
    with pytest.raises(MLLPClientError, match=f"127.0.0.1:{running.port}") as caught:
        await send_mllp("127.0.0.1", running.port, [b"1", b"2"], timeout=5)
    assert caught.value.responses == [b"ACK"]
    assert "Traceback" not in str(caught.value)


# -- plugin registration --------------------------------------------------------------------------


def test_plugin_registers_both_connectors_and_the_command() -> None:
    listener, sender = mllp_plugin.pannier_register_connectors()
    assert (listener.transport_name, listener.mode) == ("TCP Listener", "source")
    assert listener.mirth_properties_class == (
        "com.mirth.connect.connectors.tcp.TcpReceiverProperties"
    )
    assert listener.defaults["responseVariable"] == "Auto-generate (After source transformer)"
    assert listener.defaults["port"] == 6661 and listener.defaults["host"] == "0.0.0.0"
    assert (sender.transport_name, sender.mode) == ("TCP Sender", "destination")
    assert sender.mirth_properties_class == (
        "com.mirth.connect.connectors.tcp.TcpDispatcherProperties"
    )
    assert sender.templated == frozenset({"remoteAddress", "remotePort", "template"})
    assert sender.defaults["template"] == "${message.encodedData}"
    [command] = mllp_plugin.pannier_register_commands()
    assert isinstance(command, CliCommand) and command.name == "send"


def test_entry_point() -> None:
    [entry] = [e for e in entry_points(group="pannier.plugins") if e.name == "mllp"]
    assert entry.value == "pannier_mllp.plugin"
    assert entry.load() is mllp_plugin
