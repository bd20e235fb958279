"""Mirth's database schema as SQLAlchemy Core tables (mirth-compat.md §1).

Core tables come from ``server/dbconf/<db>/<db>-database.sql``; per-channel ("Donkey") tables
``D_M<n>``, ``D_MM<n>``, ``D_MC<n>``, ``D_MA<n>``, ``D_MS<n>``, ``D_MSQ<n>``, ``D_MCM<n>`` from
``donkey/donkeydbconf/<db>.xml``, where ``n`` is the channel's ``LOCAL_CHANNEL_ID``.

Types carry per-dialect variants so that MySQL/MariaDB gets ``LONGTEXT``/``TIMESTAMP NULL``,
PostgreSQL ``TEXT``/``TIMESTAMP WITH TIME ZONE``, and SQLite the same columns with its own types.
"""

from __future__ import annotations

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
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql, postgresql
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


def long_text() -> TypeEngine[str]:
    return Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def timestamp() -> TypeEngine[object]:
    return (
        TIMESTAMP()
        .with_variant(mysql.TIMESTAMP(), "mysql", "mariadb")
        .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
    )


def _nullable_ts(name: str) -> Column[object]:
    # MySQL: "TIMESTAMP NULL DEFAULT NULL" (without NULL, MySQL would make it NOT NULL).
    return Column(name, timestamp(), nullable=True, server_default=None)


def core_tables(metadata: MetaData) -> None:
    """Add Mirth's core server tables to ``metadata``."""
    Table("SCHEMA_INFO", metadata, Column("VERSION", String(40)))
    Table(
        "EVENT", metadata,
        Column("ID", Integer, primary_key=True, autoincrement=True),
        _nullable_ts("DATE_CREATED"),
        Column("NAME", long_text(), nullable=False),
        Column("EVENT_LEVEL", String(40), nullable=False),
        Column("OUTCOME", String(40), nullable=False),
        Column("ATTRIBUTES", long_text()),
        Column("USER_ID", Integer, nullable=False),
        Column("IP_ADDRESS", String(40)),
        Column("SERVER_ID", String(36)),
    )
    Table(
        "CHANNEL", metadata,
        Column("ID", CHAR(36), primary_key=True),
        Column("NAME", String(40), nullable=False),
        Column("REVISION", Integer),
        Column("CHANNEL", long_text()),
    )
    Table(
        "SCRIPT", metadata,
        Column("GROUP_ID", String(40), nullable=False),
        Column("ID", String(40), nullable=False),
        Column("SCRIPT", long_text()),
        PrimaryKeyConstraint("GROUP_ID", "ID"),
    )
    Table(
        "PERSON", metadata,
        Column("ID", Integer, primary_key=True, autoincrement=True),
        Column("USERNAME", String(40), nullable=False),
        Column("FIRSTNAME", String(40)),
        Column("LASTNAME", String(40)),
        Column("ORGANIZATION", String(255)),
        Column("INDUSTRY", String(255)),
        Column("EMAIL", String(255)),
        Column("PHONENUMBER", String(40)),
        Column("DESCRIPTION", String(255)),
        _nullable_ts("LAST_LOGIN"),
        _nullable_ts("GRACE_PERIOD_START"),
        Column("STRIKE_COUNT", Integer),
        _nullable_ts("LAST_STRIKE_TIME"),
        Column("LOGGED_IN", Boolean().with_variant(mysql.BIT(), "mysql", "mariadb"),
               nullable=False),
        Column("ROLE", String(40)),
        Column("COUNTRY", String(40)),
        Column("STATETERRITORY", String(40)),
        Column("USERCONSENT", Boolean, nullable=False, server_default=text("false")),
    )
    Table(
        "PERSON_PREFERENCE", metadata,
        Column("PERSON_ID", Integer, nullable=False),
        Column("NAME", String(255), nullable=False),
        Column("VALUE", long_text()),
        ForeignKeyConstraint(["PERSON_ID"], ["PERSON.ID"], ondelete="CASCADE",
                             name="PERSON_ID_PERSON_PREF_FK"),
        Index("PERSON_PREFERENCE_INDEX1", "PERSON_ID"),
    )
    Table(
        "PERSON_PASSWORD", metadata,
        Column("PERSON_ID", Integer, nullable=False),
        Column("PASSWORD", String(255), nullable=False),
        _nullable_ts("PASSWORD_DATE"),
        ForeignKeyConstraint(["PERSON_ID"], ["PERSON.ID"], ondelete="CASCADE",
                             name="PERSON_ID_PP_FK"),
    )
    Table(
        "ALERT", metadata,
        Column("ID", String(36), primary_key=True),
        Column("NAME", String(255), nullable=False, unique=True),
        Column("ALERT", long_text(), nullable=False),
    )
    Table(
        "CODE_TEMPLATE_LIBRARY", metadata,
        Column("ID", String(255), primary_key=True),
        Column("NAME", String(255), nullable=False, unique=True),
        Column("REVISION", Integer),
        Column("LIBRARY", long_text()),
    )
    Table(
        "CODE_TEMPLATE", metadata,
        Column("ID", String(255), primary_key=True),
        Column("NAME", String(255), nullable=False),
        Column("REVISION", Integer),
        Column("CODE_TEMPLATE", long_text()),
    )
    Table(
        "CONFIGURATION", metadata,
        Column("CATEGORY", String(255), nullable=False),
        Column("NAME", String(255), nullable=False),
        Column("VALUE", long_text()),
        PrimaryKeyConstraint("CATEGORY", "NAME"),
    )
    Table(
        "CHANNEL_GROUP", metadata,
        Column("ID", String(255), primary_key=True),
        Column("NAME", String(255), nullable=False, unique=True),
        Column("REVISION", Integer),
        Column("CHANNEL_GROUP", long_text()),
    )
    Table(
        "DEBUGGER_USAGE", metadata,
        Column("ID", Integer, primary_key=True, autoincrement=True),
        Column("SERVER_ID", String(50), nullable=False),
        *(Column(name, Integer) for name in (
            "DUPP_COUNT", "ATTACH_BATCH_COUNT", "SOURCE_CONNECTOR_COUNT",
            "SOURCE_FILTER_TRANS_COUNT", "DESTINATION_FILTER_TRANS_COUNT",
            "DESTINATION_CONNECTOR_COUNT", "RESPONSE_COUNT", "INVOCATION_COUNT")),
    )
    Table("STARTUP_LOCK", metadata, Column("ID", Integer, primary_key=True, autoincrement=False))
    Table(
        "D_CHANNELS", metadata,
        Column("LOCAL_CHANNEL_ID", BigInteger, nullable=False, autoincrement=False),
        Column("CHANNEL_ID", String(36), nullable=False),
        PrimaryKeyConstraint("LOCAL_CHANNEL_ID", name="D_CHANNELS_PKEY"),
        UniqueConstraint("CHANNEL_ID", name="UNIQUE_CHANNEL_ID"),
    )


_METADATA_TYPES = {
    # Mirth's custom metadata column DDL per database (mysql.xml / postgres.xml).
    "mysql": {"STRING": "VARCHAR(255)", "NUMBER": "DECIMAL(31, 15)", "BOOLEAN": "BIT",
              "TIMESTAMP": "DATETIME NULL DEFAULT NULL"},
    "postgresql": {"STRING": "CHARACTER VARYING(255)", "NUMBER": "NUMERIC(31, 15)",
                   "BOOLEAN": "BOOLEAN", "TIMESTAMP": "TIMESTAMP WITHOUT TIME ZONE"},
    "sqlite": {"STRING": "VARCHAR(255)", "NUMBER": "NUMERIC(31, 15)", "BOOLEAN": "BOOLEAN",
               "TIMESTAMP": "TIMESTAMP"},
}


def metadata_column_type(dialect: str, kind: str) -> str:
    """The SQL type Mirth gives a custom metadata column of ``kind`` on ``dialect``."""
    table = _METADATA_TYPES["mysql" if dialect in ("mysql", "mariadb") else dialect]
    return table[kind]


class ChannelTables:
    """The seven Donkey tables of one channel, named by its local channel id."""

    def __init__(self, local_channel_id: int) -> None:
        n = local_channel_id
        self.local_channel_id = n
        self.metadata = MetaData()
        md = self.metadata
        self.message = Table(
            f"D_M{n}", md,
            Column("ID", BigInteger, nullable=False, autoincrement=False),
            Column("SERVER_ID", String(36), nullable=False),
            _nullable_ts("RECEIVED_DATE"),
            Column("PROCESSED", Boolean, nullable=False, server_default=text("false")),
            Column("ORIGINAL_ID", BigInteger),
            Column("IMPORT_ID", BigInteger),
            Column("IMPORT_CHANNEL_ID", String(36)),
            PrimaryKeyConstraint("ID", name=f"D_M{n}_PKEY"),
            Index(f"D_M{n}_INDEX1", "ID", "SERVER_ID"),
        )
        self.connector_message = Table(
            f"D_MM{n}", md,
            Column("ID", Integer, nullable=False, autoincrement=False),
            Column("MESSAGE_ID", BigInteger, nullable=False),
            Column("SERVER_ID", String(36), nullable=False),
            _nullable_ts("RECEIVED_DATE"),
            Column("STATUS", CHAR(1), nullable=False),
            Column("CONNECTOR_NAME", long_text()),
            Column("SEND_ATTEMPTS", Integer, nullable=False, server_default=text("0")),
            _nullable_ts("SEND_DATE"),
            _nullable_ts("RESPONSE_DATE"),
            Column("ERROR_CODE", Integer, nullable=False, server_default=text("0")),
            Column("CHAIN_ID", Integer, nullable=False),
            Column("ORDER_ID", Integer, nullable=False),
            PrimaryKeyConstraint("MESSAGE_ID", "ID", name=f"D_MM{n}_PKEY"),
            ForeignKeyConstraint(["MESSAGE_ID"], [f"D_M{n}.ID"], ondelete="CASCADE",
                                 name=f"D_MM{n}_FKEY"),
            Index(f"D_MM{n}_INDEX1", "MESSAGE_ID", "ID", "STATUS"),
            Index(f"D_MM{n}_INDEX2", "MESSAGE_ID", "SERVER_ID", "ID"),
            Index(f"D_MM{n}_INDEX3", "ID", "STATUS", "SERVER_ID"),
            Index(f"D_MM{n}_FKI", "MESSAGE_ID"),
        )
        self.content = Table(
            f"D_MC{n}", md,
            Column("METADATA_ID", Integer, nullable=False, autoincrement=False),
            Column("MESSAGE_ID", BigInteger, nullable=False),
            Column("CONTENT_TYPE", Integer, nullable=False),
            Column("CONTENT", long_text()),
            Column("IS_ENCRYPTED", Boolean, nullable=False),
            Column("DATA_TYPE", String(255)),
            PrimaryKeyConstraint("MESSAGE_ID", "METADATA_ID", "CONTENT_TYPE",
                                 name=f"D_MC{n}_PKEY"),
            ForeignKeyConstraint(["MESSAGE_ID", "METADATA_ID"],
                                 [f"D_MM{n}.MESSAGE_ID", f"D_MM{n}.ID"], ondelete="CASCADE",
                                 name=f"D_MC{n}_FKEY"),
            Index(f"D_MC{n}_FKI", "MESSAGE_ID", "METADATA_ID"),
        )
        self.custom_metadata = Table(
            f"D_MCM{n}", md,
            Column("METADATA_ID", Integer, nullable=False, autoincrement=False),
            Column("MESSAGE_ID", BigInteger, nullable=False),
            PrimaryKeyConstraint("MESSAGE_ID", "METADATA_ID", name=f"D_MCM{n}_PKEY"),
            ForeignKeyConstraint(["MESSAGE_ID", "METADATA_ID"],
                                 [f"D_MM{n}.MESSAGE_ID", f"D_MM{n}.ID"], ondelete="CASCADE",
                                 name=f"D_MCM{n}_FKEY"),
        )
        self.attachment = Table(
            f"D_MA{n}", md,
            Column("ID", String(255), nullable=False),
            Column("MESSAGE_ID", BigInteger, nullable=False),
            Column("TYPE", String(40)),
            Column("SEGMENT_ID", Integer, nullable=False),
            Column("ATTACHMENT_SIZE", Integer, nullable=False),
            Column("CONTENT", LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")),
            Column("ENCRYPTION_HEADER", long_text()),
            ForeignKeyConstraint(["MESSAGE_ID"], [f"D_M{n}.ID"], ondelete="CASCADE",
                                 name=f"D_MA{n}_FKEY"),
            Index(f"D_MA{n}_INDEX1", "ID"),
            Index(f"D_MA{n}_FKI", "MESSAGE_ID"),
        )
        self.statistics = Table(
            f"D_MS{n}", md,
            Column("METADATA_ID", Integer, nullable=True, autoincrement=False),
            Column("SERVER_ID", String(36), nullable=False),
            *(Column(name, BigInteger, nullable=False, server_default=text("0"))
              for name in ("RECEIVED", "RECEIVED_LIFETIME", "FILTERED", "FILTERED_LIFETIME",
                           "SENT", "SENT_LIFETIME", "ERROR", "ERROR_LIFETIME")),
            Index(f"D_MS{n}_INDEX1", "METADATA_ID", "SERVER_ID"),
        )
        # On PostgreSQL Mirth uses a real sequence instead; the store handles that case.
        self.sequence = Table(
            f"D_MSQ{n}", md,
            Column("ID", BigInteger, nullable=False, autoincrement=False),
        )

    @property
    def all(self) -> list[Table]:
        return [self.message, self.connector_message, self.content, self.custom_metadata,
                self.attachment, self.statistics, self.sequence]
