"""Users in Mirth's PERSON / PERSON_PASSWORD tables, and Pannier's roles beside them.

Mirth has no roles in its open-source schema, so Pannier keeps them in its own table,
``PANNIER_USER_ROLE (PERSON_ID, ROLE)``, which Java Mirth never reads (additive). A user
without a row there — Mirth's own ``admin`` and any user Java Mirth created — is an admin,
because every Mirth user can do everything. Passwords are Mirth's PBKDF2 format
(:mod:`pannier.api.passwords`); the current password is the newest ``PERSON_PASSWORD`` row
(``getLatestUserCredentials``).

Every function here is blocking: call it through ``Store.run_sync``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pannier.store.store import Store

ROLE_TABLE = "PANNIER_USER_ROLE"

_metadata = sa.MetaData()
role_table = sa.Table(
    ROLE_TABLE,
    _metadata,
    sa.Column("PERSON_ID", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ROLE", sa.String(40), nullable=False),
)


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: str
    password_hash: str | None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Mirth's User fields that make sense to show (never the password)."""
        return {
            "id": self.id,
            "username": self.username,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "email": self.email,
            "role": self.role,
        }


def ensure_role_table(store: Store) -> None:
    """Create ``PANNIER_USER_ROLE`` when missing (safe on every start)."""
    _metadata.create_all(store.engine, checkfirst=True)


def _now(store: Store) -> datetime:
    now = datetime.now(UTC)
    return now if store.dialect == "postgresql" else now.replace(tzinfo=None)


def find_user(store: Store, username: str) -> User | None:
    """The user called ``username`` with its current password hash, or None."""
    person = store.metadata.tables["PERSON"]
    password = store.metadata.tables["PERSON_PASSWORD"]
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(
                person.c.ID,
                person.c.USERNAME,
                person.c.FIRSTNAME,
                person.c.LASTNAME,
                person.c.EMAIL,
            ).where(person.c.USERNAME == username)
        ).first()
        if row is None:
            return None
        hashes = conn.execute(
            sa.select(password.c.PASSWORD, password.c.PASSWORD_DATE).where(
                password.c.PERSON_ID == row.ID
            )
        ).all()
        role = conn.execute(
            sa.select(role_table.c.ROLE).where(role_table.c.PERSON_ID == row.ID)
        ).scalar()
    current = _latest(hashes)
    return User(
        id=row.ID,
        username=row.USERNAME,
        role=role or "admin",
        password_hash=current,
        first_name=row.FIRSTNAME,
        last_name=row.LASTNAME,
        email=row.EMAIL,
    )


def _latest(rows: Sequence[Any]) -> str | None:
    """The newest password (a NULL date, as Mirth's seed row, is the oldest)."""
    if not rows:
        return None
    dated = sorted(rows, key=lambda r: (r.PASSWORD_DATE is not None, r.PASSWORD_DATE or 0))
    return str(dated[-1].PASSWORD)


def list_users(store: Store) -> list[User]:
    person = store.metadata.tables["PERSON"]
    with store.engine.connect() as conn:
        names = conn.execute(sa.select(person.c.USERNAME).order_by(person.c.ID)).scalars().all()
    users = [find_user(store, name) for name in names]
    return [user for user in users if user is not None]


def create_user(
    store: Store, username: str, password_hash: str, role: str, details: dict[str, str]
) -> User:
    """Insert a PERSON row, its first password and its role."""
    person = store.metadata.tables["PERSON"]
    password = store.metadata.tables["PERSON_PASSWORD"]
    with store.engine.begin() as conn:
        result = conn.execute(
            sa.insert(person).values(
                USERNAME=username,
                FIRSTNAME=details.get("firstName"),
                LASTNAME=details.get("lastName"),
                EMAIL=details.get("email"),
                LOGGED_IN=False,
            )
        )
        (user_id,) = result.inserted_primary_key or (None,)
        conn.execute(
            sa.insert(password).values(
                PERSON_ID=user_id, PASSWORD=password_hash, PASSWORD_DATE=_now(store)
            )
        )
        conn.execute(sa.insert(role_table).values(PERSON_ID=user_id, ROLE=role))
    user = find_user(store, username)
    assert user is not None
    return user


def set_password(store: Store, user_id: int, password_hash: str) -> None:
    """Add a newer PERSON_PASSWORD row (Mirth keeps the history)."""
    password = store.metadata.tables["PERSON_PASSWORD"]
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(password).values(
                PERSON_ID=user_id, PASSWORD=password_hash, PASSWORD_DATE=_now(store)
            )
        )


def set_role(store: Store, user_id: int, role: str) -> None:
    with store.engine.begin() as conn:
        updated = conn.execute(
            sa.update(role_table).where(role_table.c.PERSON_ID == user_id).values(ROLE=role)
        )
        if updated.rowcount == 0:
            conn.execute(sa.insert(role_table).values(PERSON_ID=user_id, ROLE=role))


def mark_login(store: Store, user_id: int, logged_in: bool) -> None:
    """``LOGGED_IN`` and ``LAST_LOGIN`` as Mirth's Administrator shows them."""
    person = store.metadata.tables["PERSON"]
    values: dict[str, Any] = {"LOGGED_IN": logged_in}
    if logged_in:
        values["LAST_LOGIN"] = _now(store)
    with store.engine.begin() as conn:
        conn.execute(sa.update(person).where(person.c.ID == user_id).values(**values))
