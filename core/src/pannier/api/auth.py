"""Authentication and authorisation for the HTTP API (mirth-compat §7).

- Passwords: Mirth's Digester format, Base64 of ``salt(8) || PBKDF2WithHmacSHA256(600 000
  iterations, 256 bits)``; Mirth's seeded ``admin`` hash verifies with ``admin``. Pre-4.4
  hashes (SHA-256, 1000 rounds, same layout) are accepted too. New passwords are PBKDF2, so
  Java Mirth accepts them.
- Sessions: ``JSESSIONID`` cookies mapping to server-side sessions kept in memory on this
  node (a restart or another node means logging in again).
- HTTP Basic on every endpoint. A verified (user, password) pair is remembered for a few
  minutes so a client using Basic does not pay 600 000 PBKDF2 rounds per request.
- Login limits: attempts per client address per minute, and a lock-out of a user name after
  repeated failures (``FAIL_LOCKED_OUT``).
- Roles are ordered ``admin > manager > operator > monitor``; a view marked with
  :func:`requires` is open to the roles listed and every more powerful role.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

ROLES = ("admin", "manager", "operator", "monitor")
"""From most to least powerful."""

PBKDF2_ITERATIONS = 600_000
SALT_BYTES = 8
LEGACY_SHA256_ITERATIONS = 1000
BASIC_CACHE_SECONDS = 300.0


def requires(*roles: str) -> Callable[[F], F]:
    """Allow only users holding one of ``roles`` (or a more powerful one) to call the view."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; known: {', '.join(ROLES)}")

    def mark(view: F) -> F:
        view.pannier_roles = tuple(roles)  # type: ignore[attr-defined]
        return view

    return mark


def public(view: F) -> F:
    """Mark a view that needs no login (health probes, login itself, the OpenAPI document)."""
    view.pannier_public = True  # type: ignore[attr-defined]
    return view


def role_allows(role: str, allowed: tuple[str, ...] | list[str]) -> bool:
    """True when ``role`` is one of ``allowed`` or more powerful than one of them."""
    if not allowed:
        return True
    if role not in ROLES:
        return False
    weakest = max(ROLES.index(r) for r in allowed)
    return ROLES.index(role) <= weakest


# --- passwords ------------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Mirth's stored form of ``password``: Base64 of salt and PBKDF2-SHA256 key."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, PBKDF2_ITERATIONS, 32)
    return base64.b64encode(salt + key).decode("ascii")


def verify_password(password: str, stored: str) -> bool:
    """Check ``password`` against a PERSON_PASSWORD value (PBKDF2, or pre-4.4 SHA-256)."""
    try:
        raw = base64.b64decode("".join(stored.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) != SALT_BYTES + 32:
        return False
    salt, expected = raw[:SALT_BYTES], raw[SALT_BYTES:]
    secret = password.encode("utf-8")
    derived = hashlib.pbkdf2_hmac("sha256", secret, salt, PBKDF2_ITERATIONS, 32)
    if hmac.compare_digest(derived, expected):
        return True
    digest = hashlib.sha256(salt + secret).digest()
    for _ in range(LEGACY_SHA256_ITERATIONS - 1):
        digest = hashlib.sha256(digest).digest()
    return hmac.compare_digest(digest, expected)


# --- sessions -------------------------------------------------------------------------------


@dataclass
class Session:
    user_id: int
    username: str
    role: str
    expires: float


class SessionStore:
    """In-memory sessions of this node, ended by logout or ``timeout`` seconds idle."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self, user_id: int, username: str, role: str) -> str:
        self._expire()
        token = secrets.token_urlsafe(32)
        self._sessions[token] = Session(user_id, username, role, self._clock() + self.timeout)
        return token

    def get(self, token: str) -> Session | None:
        session = self._sessions.get(token)
        if session is None:
            return None
        now = self._clock()
        if session.expires <= now:
            del self._sessions[token]
            return None
        session.expires = now + self.timeout
        return session

    def end(self, token: str) -> Session | None:
        return self._sessions.pop(token, None)

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[token]


# --- login limits ---------------------------------------------------------------------------


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


@dataclass
class LoginLimiter:
    """Attempts per client address per minute, and lock-out after repeated failures."""

    rate_per_minute: int
    max_failures: int
    lockout_seconds: float
    clock: Callable[[], float] = time.monotonic
    _attempts: dict[str, deque[float]] = field(default_factory=dict)
    _failures: dict[str, _Failures] = field(default_factory=dict)

    def allow_attempt(self, address: str) -> bool:
        """Count an attempt from ``address``; False when it is over the per-minute rate."""
        now = self.clock()
        window = self._attempts.setdefault(address, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.rate_per_minute:
            return False
        window.append(now)
        return True

    def locked_for(self, username: str) -> float:
        """Seconds ``username`` stays locked out (0 when it is not)."""
        failures = self._failures.get(username)
        if failures is None:
            return 0.0
        return max(0.0, failures.locked_until - self.clock())

    def failed(self, username: str) -> None:
        failures = self._failures.setdefault(username, _Failures())
        if failures.locked_until and failures.locked_until <= self.clock():
            failures.count, failures.locked_until = 0, 0.0
        failures.count += 1
        if failures.count >= self.max_failures:
            failures.locked_until = self.clock() + self.lockout_seconds

    def succeeded(self, username: str) -> None:
        self._failures.pop(username, None)


class BasicCache:
    """Remembers (user, stored hash, password) triples that verified, for a few minutes."""

    def __init__(self, seconds: float = BASIC_CACHE_SECONDS, size: int = 256) -> None:
        self.seconds = seconds
        self.size = size
        self._seen: dict[bytes, float] = {}

    @staticmethod
    def _key(username: str, stored: str, password: str) -> bytes:
        return hashlib.sha256(f"{username}\0{stored}\0{password}".encode()).digest()

    def hit(self, username: str, stored: str, password: str) -> bool:
        key = self._key(username, stored, password)
        expires = self._seen.get(key)
        if expires is None or expires < time.monotonic():
            self._seen.pop(key, None)
            return False
        return True

    def remember(self, username: str, stored: str, password: str) -> None:
        if len(self._seen) >= self.size:
            self._seen.clear()
        self._seen[self._key(username, stored, password)] = time.monotonic() + self.seconds
