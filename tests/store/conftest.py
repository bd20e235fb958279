"""Helpers for store tests. The real-database fixtures (``mysql_url``, ``postgres_url``,
``make_mysql_database``, ``db_url``...) come from :mod:`pannier.testing.databases`, a pytest
plugin installed with pannier-core."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mirth-ddl"

# --- Mirth's own DDL ------------------------------------------------------------------------


def sql_statements(text: str) -> list[str]:
    """Split an SQL script on ``;`` at line ends, dropping ``--`` comment lines."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


def run_mirth_ddl(url: str, kind: str, channels: dict[int, str] | None = None) -> None:
    """Build a database as Mirth does (``kind``: mysql, postgres, or sqlite running the MySQL
    scripts): ``<kind>-core.sql`` (server tables and seed rows),
    ``<kind>-d-channels.sql``, then for each ``{local id: channel id}`` a ``D_CHANNELS`` row
    and ``<kind>-channel.sql`` with ``${localChannelId}`` replaced."""
    prefix = "postgres" if kind == "postgres" else "mysql"

    def script(name: str) -> str:
        text = (FIXTURES / f"{prefix}-{name}.sql").read_text()
        if kind == "sqlite":  # SQLite runs the MySQL DDL without these two MySQL words
            text = text.replace(" ENGINE=InnoDB", "").replace(" AUTO_INCREMENT", "")
        return text

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            for name in ("core", "d-channels"):
                for statement in sql_statements(script(name)):
                    conn.exec_driver_sql(statement)
            channel_sql = script("channel")
            for local_id, channel_id in (channels or {}).items():
                conn.execute(
                    sa.text(
                        "INSERT INTO D_CHANNELS (LOCAL_CHANNEL_ID, CHANNEL_ID) VALUES (:n, :c)"
                    ),
                    {"n": local_id, "c": channel_id},
                )
                text = channel_sql.replace("${localChannelId}", str(local_id))
                for statement in sql_statements(text):
                    conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
