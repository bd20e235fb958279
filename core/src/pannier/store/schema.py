"""Mirth's database schema as SQLAlchemy Core tables (mirth-compat.md §1).

Core tables come from ``server/dbconf/<db>/<db>-database.sql``; per-channel ("Donkey") tables
``D_M<n>``, ``D_MM<n>``, ``D_MC<n>``, ``D_MA<n>``, ``D_MS<n>``, ``D_MSQ<n>``, ``D_MCM<n>`` from
``donkey/donkeydbconf/<db>.xml``, where ``n`` is the channel's ``LOCAL_CHANNEL_ID``.

Types carry per-dialect variants so that MySQL/MariaDB gets ``LONGTEXT``/``TIMESTAMP NULL``,
PostgreSQL ``TEXT``/``TIMESTAMP WITH TIME ZONE``, and SQLite the same columns with its own types.

**Identifier case.** Mirth writes every table, column, index and constraint name in upper case
and *unquoted*. MySQL keeps them as written (``D_M1``; table names are case-sensitive on Linux)
and PostgreSQL folds them to lower case (``d_m1``). Every name here is therefore an
:func:`ident` — a name SQLAlchemy renders without quotes — so each database stores exactly
what Mirth's own DDL creates, while Python code keeps using ``table.c.ID`` and ``"D_M1"``.
Catalog look-ups (reflection) must use :func:`stored_name`. Custom metadata columns are the
exception: Mirth quotes them (``ALTER TABLE D_MCMn ADD COLUMN "SOURCE"``), so they keep their
case on PostgreSQL.

**DDL vs DML.** :func:`core_tables` and :class:`ChannelTables` take an optional ``dialect``.
Without one they describe the tables for statements (the store's inserts and selects work on
every database). With one they carry that database's exact DDL details: on PostgreSQL the
``EVENT``/``PERSON``/``DEBUGGER_USAGE`` ids default to Mirth's sequences, core foreign keys
are left unnamed (Mirth declares them inline) and ``D_MSQn`` is a real sequence
(:meth:`ChannelTables.tables_for`, :attr:`ChannelTables.message_sequence`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import quoted_name
from sqlalchemy.types import CHAR, TIMESTAMP, TypeEngine

#: Mirth version written to SCHEMA_INFO by a standalone install.
SCHEMA_VERSION = "4.5.2"

#: Mirth's seeded admin password hash: PBKDF2WithHmacSHA256, 600,000 iterations, password "admin".
MIRTH_ADMIN_PASSWORD_HASH = "b8cA3mDkavInMc2JBYa6/C3EGxDp7ppqh7FsoXx0x8+3LWK3Ed3ELg=="

#: CONFIGURATION rows seeded by Mirth's install script.
DEFAULT_CONFIGURATION = [
    ("core", "stats.enabled", "1"),
    ("core", "server.resetglobalvariables", "1"),
    ("core", "smtp.timeout", "5000"),
    ("core", "smtp.auth", "0"),
    ("core", "smtp.secure", "0"),
    ("core", "server.queuebuffersize", "1000"),
]

#: PostgreSQL sequences of ``postgres-database.sql`` (``CREATE SEQUENCE X START WITH 1``).
CORE_SEQUENCES = (
    "EVENT_SEQUENCE",
    "PERSON_SEQUENCE",
    "CONFIGURATION_SEQUENCE",
    "DEBUG_USAGE_SEQUENCE",
)

#: Name prefixes of the per-channel tables, in Mirth's creation order (``JdbcDao.createChannel``).
CHANNEL_TABLE_PREFIXES = ("D_M", "D_MM", "D_MC", "D_MCM", "D_MA", "D_MS", "D_MSQ")


def ident(name: str) -> quoted_name:
    """``name`` as an unquoted SQL identifier, the way Mirth's DDL and queries write it."""
    return quoted_name(name, quote=False)


def is_mysql(dialect: str) -> bool:
    return dialect in ("mysql", "mariadb")


def stored_name(name: str, dialect: str) -> str:
    """The name the catalog holds for the unquoted identifier ``name`` (for reflection):
    PostgreSQL folds unquoted identifiers to lower case, MySQL and SQLite keep them."""
    return str(name).lower() if dialect == "postgresql" else str(name)


def long_text() -> TypeEngine[str]:
    return Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def timestamp() -> TypeEngine[Any]:
    return (
        TIMESTAMP()
        .with_variant(mysql.TIMESTAMP(), "mysql", "mariadb")
        .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
    )


def _col(name: str, type_: Any, *args: Any, **kwargs: Any) -> Column[Any]:
    return Column(ident(name), type_, *args, **kwargs)


def _nullable_ts(name: str) -> Column[Any]:
    # MySQL: "TIMESTAMP NULL DEFAULT NULL" (without NULL, MySQL would make it NOT NULL).
    return _col(name, timestamp(), nullable=True, server_default=None)


def _table(name: str, metadata: MetaData, *args: Any, innodb: bool = True) -> Table:
    # Mirth's MySQL DDL says ENGINE=InnoDB on every table but DEBUGGER_USAGE.
    kwargs: dict[str, Any] = {"mysql_engine": "InnoDB"} if innodb else {}
    order = [str(arg.name) for arg in args if isinstance(arg, Index)]
    return Table(ident(name), metadata, *args, info={"index_order": order}, **kwargs)


def create_table(conn: Connection, table: Table) -> None:
    """``CREATE TABLE``, then ``CREATE INDEX`` in the order declared, which is Mirth's
    (SQLAlchemy's own ``table.create`` takes indexes from a set; MySQL shows the order)."""
    conn.execute(CreateTable(table))
    order: list[str] = table.info.get("index_order", [])
    for index in sorted(
        table.indexes,
        key=lambda i: order.index(str(i.name)) if str(i.name) in order else len(order),
    ):
        conn.execute(CreateIndex(index))


def _index(name: str, *columns: str) -> Index:
    return Index(ident(name), *columns, postgresql_using="btree")


def _sequence_id(sequence: str | None, dialect: str | None) -> Column[Any]:
    """An INTEGER primary key: AUTO_INCREMENT on MySQL, ``DEFAULT nextval('<sequence>')`` on
    PostgreSQL (Mirth's own sequences, not SERIAL), the rowid alias on SQLite."""
    if dialect == "postgresql" and sequence is not None:
        return _col(
            "ID",
            Integer,
            primary_key=True,
            autoincrement=False,
            server_default=text(f"nextval('{sequence}')"),
        )
    return _col("ID", Integer, primary_key=True, autoincrement=True)


def core_sequences() -> list[Sequence]:
    """Mirth's PostgreSQL core sequences (only created on PostgreSQL)."""
    return [Sequence(ident(name), start=1) for name in CORE_SEQUENCES]


def core_tables(metadata: MetaData, dialect: str | None = None) -> None:
    """Add Mirth's core server tables (and ``D_CHANNELS``) to ``metadata``.

    ``dialect`` selects that database's exact DDL (see the module docstring); leave it out for
    tables used in statements only.
    """
    pg = dialect == "postgresql"
    _table("SCHEMA_INFO", metadata, _col("VERSION", String(40)))
    _table(
        "EVENT",
        metadata,
        _sequence_id("EVENT_SEQUENCE", dialect),
        _nullable_ts("DATE_CREATED"),
        _col("NAME", long_text(), nullable=False),
        _col("EVENT_LEVEL", String(40), nullable=False),
        _col("OUTCOME", String(40), nullable=False),
        _col("ATTRIBUTES", long_text()),
        _col("USER_ID", Integer, nullable=False),
        _col("IP_ADDRESS", String(40)),
        _col("SERVER_ID", String(36)),
    )
    _table(
        "CHANNEL",
        metadata,
        _col("ID", CHAR(36), primary_key=True),
        _col("NAME", String(40), nullable=False),
        _col("REVISION", Integer),
        _col("CHANNEL", long_text()),
    )
    _table(
        "SCRIPT",
        metadata,
        _col("GROUP_ID", String(40), nullable=False),
        _col("ID", String(40), nullable=False),
        _col("SCRIPT", long_text()),
        PrimaryKeyConstraint("GROUP_ID", "ID"),
    )
    _table(
        "PERSON",
        metadata,
        _sequence_id("PERSON_SEQUENCE", dialect),
        _col("USERNAME", String(40), nullable=False),
        _col("FIRSTNAME", String(40)),
        _col("LASTNAME", String(40)),
        _col("ORGANIZATION", String(255)),
        _col("INDUSTRY", String(255)),
        _col("EMAIL", String(255)),
        _col("PHONENUMBER", String(40)),
        _col("DESCRIPTION", String(255)),
        _nullable_ts("LAST_LOGIN"),
        _nullable_ts("GRACE_PERIOD_START"),
        _col("STRIKE_COUNT", Integer),
        _nullable_ts("LAST_STRIKE_TIME"),
        _col("LOGGED_IN", Boolean().with_variant(mysql.BIT(), "mysql", "mariadb"), nullable=False),
        _col("ROLE", String(40)),
        _col("COUNTRY", String(40)),
        _col("STATETERRITORY", String(40)),
        _col("USERCONSENT", Boolean, nullable=False, server_default=text("false")),
    )
    # PostgreSQL: Mirth declares these foreign keys inline ("REFERENCES PERSON(ID)"), so the
    # database names them (person_preference_person_id_fkey); MySQL's DDL names them.
    _table(
        "PERSON_PREFERENCE",
        metadata,
        _col("PERSON_ID", Integer, nullable=False),
        _col("NAME", String(255), nullable=False),
        _col("VALUE", long_text()),
        ForeignKeyConstraint(
            ["PERSON_ID"],
            ["PERSON.ID"],
            ondelete="CASCADE",
            name=None if pg else ident("PERSON_ID_PERSON_PREF_FK"),
        ),
        _index("PERSON_PREFERENCE_INDEX1", "PERSON_ID"),
    )
    _table(
        "PERSON_PASSWORD",
        metadata,
        _col("PERSON_ID", Integer, nullable=False),
        _col("PASSWORD", String(255), nullable=False),
        _nullable_ts("PASSWORD_DATE"),
        ForeignKeyConstraint(
            ["PERSON_ID"],
            ["PERSON.ID"],
            ondelete="CASCADE",
            name=None if pg else ident("PERSON_ID_PP_FK"),
        ),
    )
    _table(
        "ALERT",
        metadata,
        # VARCHAR(36) in mysql-database.sql, CHAR(36) in postgres-database.sql (§1.4).
        _col("ID", String(36).with_variant(CHAR(36), "postgresql"), primary_key=True),
        _col("NAME", String(255), nullable=False, unique=True),
        _col("ALERT", long_text(), nullable=False),
    )
    _table(
        "CODE_TEMPLATE_LIBRARY",
        metadata,
        _col("ID", String(255), primary_key=True),
        _col("NAME", String(255), nullable=False, unique=True),
        _col("REVISION", Integer),
        _col("LIBRARY", long_text()),
    )
    _table(
        "CODE_TEMPLATE",
        metadata,
        _col("ID", String(255), primary_key=True),
        _col("NAME", String(255), nullable=False),
        _col("REVISION", Integer),
        _col("CODE_TEMPLATE", long_text()),
    )
    _table(
        "CONFIGURATION",
        metadata,
        _col("CATEGORY", String(255), nullable=False),
        _col("NAME", String(255), nullable=False),
        _col("VALUE", long_text()),
        PrimaryKeyConstraint("CATEGORY", "NAME"),
    )
    _table(
        "CHANNEL_GROUP",
        metadata,
        _col("ID", String(255), primary_key=True),
        _col("NAME", String(255), nullable=False, unique=True),
        _col("REVISION", Integer),
        _col("CHANNEL_GROUP", long_text()),
    )
    _table(
        "DEBUGGER_USAGE",
        metadata,
        _sequence_id("DEBUG_USAGE_SEQUENCE", dialect),
        _col("SERVER_ID", String(50), nullable=False),
        *(
            _col(name, Integer)
            for name in (
                "DUPP_COUNT",
                "ATTACH_BATCH_COUNT",
                "SOURCE_CONNECTOR_COUNT",
                "SOURCE_FILTER_TRANS_COUNT",
                "DESTINATION_FILTER_TRANS_COUNT",
                "DESTINATION_CONNECTOR_COUNT",
                "RESPONSE_COUNT",
                "INVOCATION_COUNT",
            )
        ),
        innodb=False,
    )
    _table("STARTUP_LOCK", metadata, _col("ID", Integer, primary_key=True, autoincrement=False))
    # Created by Donkey (JdbcDao, createChannelsTable), not by <db>-database.sql.
    _table(
        "D_CHANNELS",
        metadata,
        _col("LOCAL_CHANNEL_ID", BigInteger, nullable=False, autoincrement=False),
        _col("CHANNEL_ID", String(36), nullable=False),
        PrimaryKeyConstraint("LOCAL_CHANNEL_ID", name=ident("D_CHANNELS_PKEY")),
        UniqueConstraint("CHANNEL_ID", name=ident("UNIQUE_CHANNEL_ID")),
    )


#: Core tables a takeover expects in a Mirth 4.5/4.6 database. STARTUP_LOCK is not among
#: them: it comes from a separate script and is missing from a real 4.5.2 PostgreSQL dump.
EXPECTED_CORE_TABLES = (
    "SCHEMA_INFO",
    "EVENT",
    "CHANNEL",
    "SCRIPT",
    "PERSON",
    "PERSON_PREFERENCE",
    "PERSON_PASSWORD",
    "ALERT",
    "CODE_TEMPLATE_LIBRARY",
    "CODE_TEMPLATE",
    "CONFIGURATION",
    "CHANNEL_GROUP",
    "DEBUGGER_USAGE",
)


_METADATA_TYPES = {
    # Mirth's custom metadata column DDL per database (mysql.xml / postgres.xml).
    "mysql": {
        "STRING": "VARCHAR(255)",
        "NUMBER": "DECIMAL(31, 15)",
        "BOOLEAN": "BIT",
        "TIMESTAMP": "DATETIME NULL DEFAULT NULL",
    },
    "postgresql": {
        "STRING": "CHARACTER VARYING(255)",
        "NUMBER": "NUMERIC(31, 15)",
        "BOOLEAN": "BOOLEAN",
        "TIMESTAMP": "TIMESTAMP WITHOUT TIME ZONE",
    },
    "sqlite": {
        "STRING": "VARCHAR(255)",
        "NUMBER": "NUMERIC(31, 15)",
        "BOOLEAN": "BOOLEAN",
        "TIMESTAMP": "TIMESTAMP",
    },
}


def metadata_column_type(dialect: str, kind: str) -> str:
    """The SQL type Mirth gives a custom metadata column of ``kind`` on ``dialect``."""
    table = _METADATA_TYPES["mysql" if is_mysql(dialect) else dialect]
    return table[kind]


def message_sequence(local_channel_id: int) -> Sequence:
    """Mirth's PostgreSQL ``D_MSQn``: ``CREATE SEQUENCE D_MSQn INCREMENT 1 MINVALUE 1
    MAXVALUE 9223372036854775807 START 1 CACHE 1`` (postgres.xml, createMessageSequence)."""
    return Sequence(
        ident(f"D_MSQ{local_channel_id}"),
        start=1,
        increment=1,
        minvalue=1,
        maxvalue=9223372036854775807,
        cache=1,
    )


class ChannelTables:
    """The seven Donkey tables of one channel, named by its local channel id.

    ``sequence`` is the ``D_MSQn`` *table* (MySQL, SQLite: one row holding the next id);
    ``message_sequence`` is the ``D_MSQn`` *sequence* PostgreSQL uses instead. ``all`` lists
    the seven tables; :meth:`tables_for` the ones that exist as tables on a given database.
    """

    def __init__(self, local_channel_id: int, dialect: str | None = None) -> None:
        n = local_channel_id
        self.local_channel_id = n
        self.dialect = dialect
        self.metadata = MetaData()
        md = self.metadata
        self.message = _table(
            f"D_M{n}",
            md,
            _col("ID", BigInteger, nullable=False, autoincrement=False),
            _col("SERVER_ID", String(36), nullable=False),
            _nullable_ts("RECEIVED_DATE"),
            _col("PROCESSED", Boolean, nullable=False, server_default=text("false")),
            _col("ORIGINAL_ID", BigInteger),
            _col("IMPORT_ID", BigInteger),
            _col("IMPORT_CHANNEL_ID", String(36)),
            PrimaryKeyConstraint("ID", name=ident(f"D_M{n}_PKEY")),
            _index(f"D_M{n}_INDEX1", "ID", "SERVER_ID"),
        )
        self.connector_message = _table(
            f"D_MM{n}",
            md,
            _col("ID", Integer, nullable=False, autoincrement=False),
            _col("MESSAGE_ID", BigInteger, nullable=False),
            _col("SERVER_ID", String(36), nullable=False),
            _nullable_ts("RECEIVED_DATE"),
            _col("STATUS", CHAR(1), nullable=False),
            _col("CONNECTOR_NAME", long_text()),
            _col("SEND_ATTEMPTS", Integer, nullable=False, server_default=text("0")),
            _nullable_ts("SEND_DATE"),
            _nullable_ts("RESPONSE_DATE"),
            _col("ERROR_CODE", Integer, nullable=False, server_default=text("0")),
            _col("CHAIN_ID", Integer, nullable=False),
            _col("ORDER_ID", Integer, nullable=False),
            PrimaryKeyConstraint("MESSAGE_ID", "ID", name=ident(f"D_MM{n}_PKEY")),
            ForeignKeyConstraint(
                ["MESSAGE_ID"], [f"D_M{n}.ID"], ondelete="CASCADE", name=ident(f"D_MM{n}_FKEY")
            ),
            _index(f"D_MM{n}_INDEX1", "MESSAGE_ID", "ID", "STATUS"),
            _index(f"D_MM{n}_INDEX2", "MESSAGE_ID", "SERVER_ID", "ID"),
            _index(f"D_MM{n}_INDEX3", "ID", "STATUS", "SERVER_ID"),
            _index(f"D_MM{n}_FKI", "MESSAGE_ID"),
        )
        self.content = _table(
            f"D_MC{n}",
            md,
            _col("METADATA_ID", Integer, nullable=False, autoincrement=False),
            _col("MESSAGE_ID", BigInteger, nullable=False),
            _col("CONTENT_TYPE", Integer, nullable=False),
            _col("CONTENT", long_text()),
            _col("IS_ENCRYPTED", Boolean, nullable=False),
            _col("DATA_TYPE", String(255)),
            PrimaryKeyConstraint(
                "MESSAGE_ID", "METADATA_ID", "CONTENT_TYPE", name=ident(f"D_MC{n}_PKEY")
            ),
            ForeignKeyConstraint(
                ["MESSAGE_ID", "METADATA_ID"],
                [f"D_MM{n}.MESSAGE_ID", f"D_MM{n}.ID"],
                ondelete="CASCADE",
                name=ident(f"D_MC{n}_FKEY"),
            ),
            _index(f"D_MC{n}_FKI", "MESSAGE_ID", "METADATA_ID"),
        )
        self.custom_metadata = _table(
            f"D_MCM{n}",
            md,
            *self._custom_metadata_keys(),
            PrimaryKeyConstraint("MESSAGE_ID", "METADATA_ID", name=ident(f"D_MCM{n}_PKEY")),
            ForeignKeyConstraint(
                ["MESSAGE_ID", "METADATA_ID"],
                [f"D_MM{n}.MESSAGE_ID", f"D_MM{n}.ID"],
                ondelete="CASCADE",
                name=ident(f"D_MCM{n}_FKEY"),
            ),
        )
        self.attachment = _table(
            f"D_MA{n}",
            md,
            _col("ID", String(255), nullable=False),
            _col("MESSAGE_ID", BigInteger, nullable=False),
            _col("TYPE", String(40)),
            _col("SEGMENT_ID", Integer, nullable=False),
            _col("ATTACHMENT_SIZE", Integer, nullable=False),
            _col("CONTENT", LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")),
            _col("ENCRYPTION_HEADER", long_text()),
            ForeignKeyConstraint(
                ["MESSAGE_ID"], [f"D_M{n}.ID"], ondelete="CASCADE", name=ident(f"D_MA{n}_FKEY")
            ),
            _index(f"D_MA{n}_INDEX1", "ID"),
            _index(f"D_MA{n}_FKI", "MESSAGE_ID"),
        )
        self.statistics = _table(
            f"D_MS{n}",
            md,
            _col("METADATA_ID", Integer, nullable=True, autoincrement=False),
            _col("SERVER_ID", String(36), nullable=False),
            *(
                _col(name, BigInteger, nullable=False, server_default=text("0"))
                for name in (
                    "RECEIVED",
                    "RECEIVED_LIFETIME",
                    "FILTERED",
                    "FILTERED_LIFETIME",
                    "SENT",
                    "SENT_LIFETIME",
                    "ERROR",
                    "ERROR_LIFETIME",
                )
            ),
            _index(f"D_MS{n}_INDEX1", "METADATA_ID", "SERVER_ID"),
        )
        self.sequence = _table(
            f"D_MSQ{n}",
            md,
            _col("ID", BigInteger, nullable=False, autoincrement=False),
        )
        self.message_sequence = message_sequence(n)

    @staticmethod
    def _custom_metadata_keys() -> list[Column[Any]]:
        return [
            _col("METADATA_ID", Integer, nullable=False, autoincrement=False),
            _col("MESSAGE_ID", BigInteger, nullable=False),
        ]

    @property
    def all(self) -> list[Table]:
        return [
            self.message,
            self.connector_message,
            self.content,
            self.custom_metadata,
            self.attachment,
            self.statistics,
            self.sequence,
        ]

    def tables_for(self, dialect: str) -> list[Table]:
        """The tables this channel has on ``dialect``, in Mirth's creation order: all seven,
        except on PostgreSQL where ``D_MSQn`` is a sequence."""
        if dialect == "postgresql":
            return self.all[:-1]
        return self.all

    def custom_metadata_for(self, columns: Iterable[str]) -> Table:
        """``D_MCMn`` with these custom metadata columns (text-typed, for inserts). Their names
        are quoted, as Mirth quotes them, so they keep their case on PostgreSQL."""
        return Table(
            self.custom_metadata.name,
            MetaData(),
            *self._custom_metadata_keys(),
            *(Column(quoted_name(name, quote=True), String(255)) for name in columns),
        )
