"""Talking to a running engine's HTTP API from the command line.

Credentials, first found wins: ``--user``/``--password``, the ``PANNIER_API_USER`` /
``PANNIER_API_PASSWORD`` environment, then the session ``pannier login`` saved in
``~/.config/pannier/session`` (``$XDG_CONFIG_HOME`` if set; mode 0600) for that URL. Every
failure becomes a :class:`ClientError` whose text says what went wrong in words a user can act
on (the API could not be reached, the login was refused, what was not found).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
USER_VARIABLE = "PANNIER_API_USER"
PASSWORD_VARIABLE = "PANNIER_API_PASSWORD"
URL_VARIABLE = "PANNIER_API_URL"
SESSION_COOKIE = "JSESSIONID"
TIMEOUT = 60.0


class ClientError(Exception):
    """A command failed; the text is for the user, ``exit_code`` for the shell."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--user``, ``--password``: the options every client command takes."""
    parser.add_argument(
        "--url",
        default=None,
        help=f"the engine's API (default: ${URL_VARIABLE}, the saved session's, else "
        f"{DEFAULT_URL})",
    )
    parser.add_argument("--user", "-u", default=None, help=f"user name (or ${USER_VARIABLE})")
    parser.add_argument(
        "--password", "-p", default=None, help=f"password (or ${PASSWORD_VARIABLE})"
    )


def session_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pannier" / "session"


@dataclass(frozen=True)
class SavedSession:
    url: str
    username: str
    cookie: str


def load_session() -> SavedSession | None:
    path = session_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SavedSession(str(data["url"]), str(data["username"]), str(data["cookie"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_session(session: SavedSession) -> Path:
    """Write the session readable by its owner only (the cookie is a credential)."""
    path = session_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    text = json.dumps(session.__dict__)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)
    return path


def forget_session() -> bool:
    try:
        session_path().unlink()
    except FileNotFoundError:
        return False
    return True


def _normal_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith("/api"):
        url = url[: -len("/api")]
    if "://" not in url:
        url = f"http://{url}"
    return url


class Client:
    """An API client for one command run: Basic auth when credentials are given, else the
    saved session's cookie."""

    def __init__(self, args: argparse.Namespace, *, use_session: bool = True) -> None:
        saved = load_session() if use_session else None
        url = args.url or os.environ.get(URL_VARIABLE) or (saved.url if saved else DEFAULT_URL)
        self.url = _normal_url(url)
        user = args.user or os.environ.get(USER_VARIABLE)
        password = args.password or os.environ.get(PASSWORD_VARIABLE)
        self.user = user
        auth = None
        cookies = {}
        if user is not None:
            if password is None:
                raise ClientError(
                    f"--user {user}: give the password too (--password or ${PASSWORD_VARIABLE})",
                    2,
                )
            auth = httpx.BasicAuth(user, password)
        elif saved is not None and _normal_url(saved.url) == self.url:
            cookies[SESSION_COOKIE] = saved.cookie
            self.user = saved.username
        self.credentials = "basic" if auth is not None else "session" if cookies else None
        self.http = httpx.Client(
            base_url=self.url,
            auth=auth,
            cookies=cookies,
            headers={"X-Requested-With": "pannier-cli", "Accept": "application/json"},
            timeout=TIMEOUT,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str = "",
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request; raise :class:`ClientError` for anything but 2xx. ``what`` names
        the thing the path is about, for a 404 ("channel 'ADT in'")."""
        response = self.send(method, path, **kwargs)
        if response.is_success:
            return response
        message = _error_text(response)
        if response.status_code == 401:
            if self.credentials == "basic":
                raise ClientError(f"login failed for user {self.user!r}: {message}")
            if self.credentials == "session":
                raise ClientError(
                    "not logged in: the saved session has ended (engine restarted or idle "
                    "too long); run 'pannier login' again"
                )
            raise ClientError(
                "not logged in: run 'pannier login', or give --user and --password "
                f"(or ${USER_VARIABLE} and ${PASSWORD_VARIABLE})"
            )
        if response.status_code == 403:
            raise ClientError(f"not allowed: {message}")
        if response.status_code == 404:
            raise ClientError(f"not found: {what + ': ' if what else ''}{message}")
        raise ClientError(f"{message} (HTTP {response.status_code})")

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request, whatever the answer; only a failure to get one is an error."""
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ClientError(
                f"cannot reach the Pannier API at {self.url}: {_reason(exc)}"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(
                f"the Pannier API at {self.url} did not answer within {TIMEOUT:.0f} s"
            ) from None
        except httpx.HTTPError as exc:
            raise ClientError(f"request to the Pannier API at {self.url} failed: {exc}") from None

    def json(self, method: str, path: str, *, what: str = "", **kwargs: Any) -> Any:
        response = self.request(method, path, what=what, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"the API at {self.url} answered {path} with something that is not JSON; "
                "is this a Pannier engine?"
            ) from None

    def channel_id(self, id_or_name: str) -> tuple[str, str]:
        """``(id, name)`` of the channel with that id or name (exact, then ignoring case)."""
        names: dict[str, str] = self.json("GET", "/api/channels/idsAndNames")
        if id_or_name in names:
            return id_or_name, names[id_or_name]
        for fold in (False, True):
            wanted = id_or_name.casefold() if fold else id_or_name
            found = [
                (cid, name)
                for cid, name in names.items()
                if (name.casefold() if fold else name) == wanted
            ]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                ids = ", ".join(cid for cid, _ in found)
                raise ClientError(f"several channels are named {id_or_name!r} ({ids}); use the id")
        known = ", ".join(sorted(names.values())) or "none"
        raise ClientError(
            f"not found: no channel with id or name {id_or_name!r} (channels: {known})"
        )


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused (is the engine running, with [api] enabled on this port?)"
    return text


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(data, dict):
        return str(data.get("error") or data.get("message") or data)
    return str(data)
