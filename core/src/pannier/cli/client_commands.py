"""CLI commands against a running engine, through its HTTP API::

    pannier login [--url URL] [--user NAME] [--password SECRET]
    pannier logout
    pannier channels list
    pannier channels deploy|undeploy|start|stop ID_OR_NAME
    pannier status
    pannier messages search CHANNEL [--status E] [--text foo] [--limit 20]
    pannier messages show CHANNEL MESSAGE_ID
    pannier messages send CHANNEL FILE [--source-map key=value]

Exit status: 0 done, 1 the API refused or could not be reached (the message says which),
2 bad input on the command line (an unreadable file, a password missing).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pannier.cli.client import (
    Client,
    ClientError,
    SavedSession,
    add_connection_arguments,
    forget_session,
    load_session,
    save_session,
    session_path,
)
from pannier.extensions import CliCommand

Runner = Callable[[argparse.Namespace], int]


def _guard(run: Callable[[argparse.Namespace], int | None]) -> Runner:
    """Turn a :class:`ClientError` into one line on stderr and its exit status."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args) or 0
        except ClientError as exc:
            print(f"pannier: error: {exc.message}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return 130

    return guarded


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table; numeric columns right-aligned."""
    cells = [[str(h) for h in headers], *([("" if v is None else str(v)) for v in r] for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(r[i], int) for r in rows) and bool(rows) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _channel_path(channel_id: str) -> str:
    return f"/api/channels/{quote(channel_id, safe='')}"


# --- login / logout ------------------------------------------------------------------------------


def _login(args: argparse.Namespace) -> int:
    user = args.user
    password = args.password
    if user is None:
        if not sys.stdin.isatty():
            raise ClientError("give --user (no terminal to ask on)", 2)
        user = input("User: ").strip()
    if password is None:
        if not sys.stdin.isatty():
            raise ClientError("give --password (no terminal to ask on)", 2)
        password = getpass.getpass("Password: ")
    anonymous = argparse.Namespace(url=args.url, user=None, password=None)
    with Client(anonymous, use_session=False) as client:
        response = client.send(
            "POST", "/api/users/_login", data={"username": user, "password": password}
        )
        try:
            status = response.json()
        except ValueError:
            status = {}
        if not response.is_success:
            message = status.get("message") or status.get("error") or response.text.strip()
            raise ClientError(f"login failed: {message} (HTTP {response.status_code})")
        cookie = response.cookies.get("JSESSIONID")
        if not cookie:
            raise ClientError(f"login failed: the API at {client.url} gave no session cookie")
        path = save_session(SavedSession(client.url, user, cookie))
    print(f"logged in to {client.url} as {user} (session saved in {path})")
    return 0


def _logout(args: argparse.Namespace) -> int:
    saved = load_session()
    if saved is None:
        print(f"not logged in (no session in {session_path()})")
        return 0
    try:
        with Client(argparse.Namespace(url=saved.url, user=None, password=None)) as client:
            client.send("POST", "/api/users/_logout")  # an ended session is fine too
    except ClientError as exc:
        print(f"pannier: warning: {exc.message}; forgetting the session anyway", file=sys.stderr)
    forget_session()
    print(f"logged out of {saved.url}")
    return 0


# --- channels and status -------------------------------------------------------------------------


def _statuses(client: Client, include_undeployed: bool) -> list[dict[str, Any]]:
    params = {"includeUndeployed": "true"} if include_undeployed else {}
    statuses: list[dict[str, Any]] = client.json("GET", "/api/channels/statuses", params=params)
    return statuses


def _channels_list(args: argparse.Namespace) -> int:
    with Client(args) as client:
        statuses = _statuses(client, include_undeployed=True)
    if args.json:
        _print_json(statuses)
        return 0
    rows = [(s["channelId"], s["name"], s["state"]) for s in statuses]
    print(_table(("ID", "NAME", "STATE"), rows) if rows else "no channels")
    return 0


_ACTIONS = {
    "deploy": ("_deploy", "deployed"),
    "undeploy": ("_undeploy", "undeployed"),
    "start": ("_start", "started"),
    "stop": ("_stop", "stopped"),
}


def _channels_action(args: argparse.Namespace) -> int:
    with Client(args) as client:
        channel_id, name = client.channel_id(args.channel)
        path, done = _ACTIONS[args.action]
        answer = client.json(
            "POST", f"{_channel_path(channel_id)}/{path}", what=f"channel {name!r}"
        )
    state = answer.get("state") if isinstance(answer, dict) else None
    print(f"channel {name!r} ({channel_id}) {done}" + (f": {state}" if state else ""))
    return 0


def _status(args: argparse.Namespace) -> int:
    with Client(args) as client:
        statuses = _statuses(client, include_undeployed=False)
    if args.json:
        _print_json(statuses)
        return 0
    rows = []
    for s in statuses:
        stats = s.get("statistics") or {}
        rows.append(
            (
                s["name"],
                s["state"],
                int(stats.get("RECEIVED", 0)),
                int(stats.get("FILTERED", 0)),
                int(s.get("queued") or 0),
                int(stats.get("SENT", 0)),
                int(stats.get("ERROR", 0)),
            )
        )
    headers = ("CHANNEL", "STATE", "RECEIVED", "FILTERED", "QUEUED", "SENT", "ERRORED")
    print(_table(headers, rows) if rows else "no channels deployed")
    return 0


# --- messages ------------------------------------------------------------------------------------


def _statuses_text(message: dict[str, Any]) -> str:
    connectors = message.get("connectorMessages", {})
    return ", ".join(
        f"{c.get('connectorName')}={c.get('status')}"
        for _mid, c in sorted(connectors.items(), key=lambda item: int(item[0]))
    )


def _messages_search(args: argparse.Namespace) -> int:
    params: list[tuple[str, str]] = [("limit", str(args.limit)), ("offset", str(args.offset))]
    params += [("status", s) for s in args.status or ()]
    params += [("metaDataSearch", m) for m in args.metadata or ()]
    for name, value in (
        ("textSearch", args.text),
        ("startDate", args.since),
        ("endDate", args.until),
    ):
        if value:
            params.append((name, value))
    with Client(args) as client:
        channel_id, name = client.channel_id(args.channel)
        messages = client.json(
            "GET", f"{_channel_path(channel_id)}/messages", params=params, what=f"channel {name!r}"
        )
    if args.json:
        _print_json(messages)
        return 0
    if not messages:
        print(f"no messages in channel {name!r} match")
        return 0
    rows = [(m["messageId"], m["receivedDate"], _statuses_text(m)) for m in messages]
    print(_table(("ID", "RECEIVED", "STATUS"), rows))
    return 0


_SHOWN = (
    ("raw", "raw"),
    ("processedRaw", "processed raw"),
    ("transformed", "transformed"),
    ("encoded", "encoded"),
    ("sent", "sent"),
    ("response", "response"),
    ("processedResponse", "processed response"),
    ("processingErrorContent", "processing error"),
    ("postProcessorErrorContent", "postprocessor error"),
    ("responseErrorContent", "response error"),
)
_MAPS = (
    ("sourceMapContent", "source map"),
    ("connectorMapContent", "connector map"),
    ("channelMapContent", "channel map"),
    ("responseMapContent", "response map"),
)


def _readable(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def _messages_show(args: argparse.Namespace) -> int:
    with Client(args) as client:
        channel_id, name = client.channel_id(args.channel)
        message = client.json(
            "GET",
            f"{_channel_path(channel_id)}/messages/{args.message_id}",
            what=f"message {args.message_id} of channel {name!r}",
        )
    if args.json:
        _print_json(message)
        return 0
    print(f"message {message['messageId']} of channel {name!r} ({channel_id})")
    print(f"received {message['receivedDate']} on server {message['serverId']}")
    if message.get("originalId") is not None:
        print(f"reprocessed from message {message['originalId']}")
    if not message.get("processed"):
        print("still being processed")
    connectors = message.get("connectorMessages", {})
    for _mid, connector in sorted(connectors.items(), key=lambda item: int(item[0])):
        print()
        print(f"== {connector['connectorName']} ({connector['metaDataId']}): {connector['status']}")
        if connector.get("metaDataMap"):
            values = ", ".join(f"{k}={v}" for k, v in connector["metaDataMap"].items())
            print(f"   metadata: {values}")
        for field, label in _MAPS:
            content = connector.get(field) or {}
            if content.get("map"):
                values = ", ".join(f"{k}={v}" for k, v in content["map"].items())
                print(f"   {label}: {values}")
        for field, label in _SHOWN:
            content = connector.get(field)
            if content and content.get("content"):
                print(
                    f"-- {label}" + (f" ({content['dataType']})" if content.get("dataType") else "")
                )
                print(_readable(content["content"]))
    return 0


def message_body(data: bytes) -> bytes:
    """A file's bytes as the message: HL7 v2 text files (starting with ``MSH``) get CR segment
    ends, as editors save LF or CRLF; anything else is sent exactly as it is."""
    stripped = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if stripped.startswith(b"MSH"):
        text = stripped.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip(b"\r")
        return text + b"\r"
    return data


def _messages_send(args: argparse.Namespace) -> int:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise ClientError(f"{args.file}: cannot read the message file: {exc.strerror}", 2) from None
    params = [("sourceMapEntry", entry) for entry in args.source_map or ()]
    for entry in args.source_map or ():
        if "=" not in entry:
            raise ClientError(f"--source-map {entry!r}: expected key=value", 2)
    with Client(args) as client:
        channel_id, name = client.channel_id(args.channel)
        answer = client.json(
            "POST",
            f"{_channel_path(channel_id)}/messages",
            content=message_body(data),
            params=params,
            headers={"Content-Type": "text/plain; charset=utf-8"},
            what=f"channel {name!r}",
        )
    if args.json:
        _print_json(answer)
        return 0
    statuses = ", ".join(f"{mid}={status}" for mid, status in answer["statuses"].items())
    print(f"message {answer['messageId']} sent to channel {name!r}: {statuses}")
    return 0


# --- argument parsers ----------------------------------------------------------------------------


def _configure_login(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)


def _configure_logout(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(url=None, user=None, password=None)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _configure_channels(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every channel with its state")
    add_connection_arguments(listing)
    _json_flag(listing)
    listing.set_defaults(_client_run=_guard(_channels_list))
    for action, (_path, done) in _ACTIONS.items():
        sub = actions.add_parser(action, help=f"{action} a channel (it is {done})")
        sub.add_argument("channel", metavar="ID_OR_NAME", help="the channel's id or name")
        add_connection_arguments(sub)
        sub.set_defaults(_client_run=_guard(_channels_action))


def _configure_status(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    _json_flag(parser)


def _configure_messages(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    search = actions.add_parser("search", help="list a channel's messages, newest first")
    search.add_argument("channel", metavar="CHANNEL", help="the channel's id or name")
    search.add_argument(
        "--status",
        action="append",
        metavar="S",
        help="R F T S Q E P, or the names (ERROR); repeat for several",
    )
    search.add_argument("--text", help="text anywhere in the message's content")
    search.add_argument(
        "--metadata", action="append", metavar="'COLUMN OP VALUE'", help="e.g. 'SOURCE = LAB'"
    )
    search.add_argument("--since", metavar="DATE", help="received at or after (ISO 8601)")
    search.add_argument("--until", metavar="DATE", help="received at or before (ISO 8601)")
    search.add_argument("--limit", type=int, default=20, help="messages to list (default 20)")
    search.add_argument("--offset", type=int, default=0, help="skip this many first")
    add_connection_arguments(search)
    _json_flag(search)
    search.set_defaults(_client_run=_guard(_messages_search))

    show = actions.add_parser("show", help="one message with all its content")
    show.add_argument("channel", metavar="CHANNEL", help="the channel's id or name")
    show.add_argument("message_id", metavar="MESSAGE_ID", type=int)
    add_connection_arguments(show)
    _json_flag(show)
    show.set_defaults(_client_run=_guard(_messages_show))

    send = actions.add_parser("send", help="send a file to a channel as a new message")
    send.add_argument("channel", metavar="CHANNEL", help="the channel's id or name")
    send.add_argument("file", metavar="FILE", help="the message file ('-' reads stdin)")
    send.add_argument(
        "--source-map", action="append", metavar="KEY=VALUE", help="a source map entry"
    )
    add_connection_arguments(send)
    _json_flag(send)
    send.set_defaults(_client_run=_guard(_messages_send))


def _dispatch(args: argparse.Namespace) -> int:
    run: Runner = args._client_run
    return run(args)


def client_commands() -> list[CliCommand]:
    """The commands that talk to a running engine's API."""
    return [
        CliCommand(
            "login",
            "log in to a running engine's API and keep the session",
            _configure_login,
            _guard(_login),
        ),
        CliCommand("logout", "end the saved API session", _configure_logout, _guard(_logout)),
        CliCommand(
            "channels",
            "list, deploy, undeploy, start or stop channels of a running engine",
            _configure_channels,
            _dispatch,
        ),
        CliCommand(
            "status",
            "the running engine's channels with their message counts",
            _configure_status,
            _guard(_status),
        ),
        CliCommand(
            "messages",
            "search, show or send messages of a running engine's channel",
            _configure_messages,
            _dispatch,
        ),
    ]
