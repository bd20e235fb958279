"""Mirth's password formats (mirth-compat §1.4), without a server."""

from __future__ import annotations

import base64
import hashlib

from pannier.api.auth import LoginLimiter, SessionStore, hash_password, verify_password

MIRTH_ADMIN = "b8cA3mDkavInMc2JBYa6/C3EGxDp7ppqh7FsoXx0x8+3LWK3Ed3ELg=="


def test_mirth_seeded_admin_hash_verifies_with_admin_only() -> None:
    assert verify_password("admin", MIRTH_ADMIN)
    assert not verify_password("Admin", MIRTH_ADMIN)
    # Java writes Base64 chunked (a trailing CRLF): still the same hash.
    assert verify_password("admin", MIRTH_ADMIN + "\r\n")


def test_new_hashes_have_mirths_layout_and_a_fresh_salt() -> None:
    salt = b"12345678"
    stored = hash_password("pw", salt=salt)
    raw = base64.b64decode(stored)
    assert raw == salt + hashlib.pbkdf2_hmac("sha256", b"pw", salt, 600_000, 32)
    assert hash_password("pw") != hash_password("pw")


def test_pre_4_4_sha256_hashes_are_accepted() -> None:
    salt = b"abcdefgh"
    digest = hashlib.sha256(salt + b"old-pw").digest()
    for _ in range(999):
        digest = hashlib.sha256(digest).digest()
    stored = base64.b64encode(salt + digest).decode()
    assert verify_password("old-pw", stored)
    assert not verify_password("other", stored)


def test_garbage_hashes_never_verify() -> None:
    assert not verify_password("admin", "not base64 at all!")
    assert not verify_password("admin", base64.b64encode(b"short").decode())


def test_sessions_end_after_the_idle_timeout() -> None:
    now = [0.0]
    sessions = SessionStore(timeout=10, clock=lambda: now[0])
    token = sessions.create(1, "admin", "admin")
    now[0] = 9
    assert sessions.get(token) is not None  # and the idle clock restarts
    now[0] = 18
    assert sessions.get(token) is not None
    now[0] = 29
    assert sessions.get(token) is None


def test_lockout_expires() -> None:
    now = [0.0]
    limiter = LoginLimiter(
        rate_per_minute=100, max_failures=2, lockout_seconds=60, clock=lambda: now[0]
    )
    limiter.failed("bob")
    assert limiter.locked_for("bob") == 0
    limiter.failed("bob")
    assert limiter.locked_for("bob") == 60
    now[0] = 61
    assert limiter.locked_for("bob") == 0
    limiter.failed("bob")  # a fresh count after the lock-out
    assert limiter.locked_for("bob") == 0
