"""Configuration: file, environment overrides, Mirth-style aliases, and errors that name the
key, the value, where it came from and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from pannier.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pannier.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file() -> None:
    config = load_config(None, environ={})
    assert config["database.url"] == "sqlite:///pannier.db"
    assert config["database.sequence_allocator"] == "block"
    assert config["database.sequence_block_size"] == 100
    assert config["cluster.map_backend"] == "memory"
    assert config["api.port"] == 8080


def test_file_values_and_relative_sqlite_path(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, '[server]\ndata_dir = "state"\n[database]\nurl = "sqlite:///m.db"\n'),
        environ={},
    )
    assert config.database_url == f"sqlite:///{tmp_path / 'state' / 'm.db'}"
    assert config.origin("server.data_dir") == str(tmp_path / "pannier.toml")


def test_environment_overrides_file_and_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nmode = "standalone"\nsequence_block_size = 10\n')
    config = load_config(
        path,
        environ={
            "PANNIER_DATABASE_URL": "postgresql+psycopg://u:pw@127.0.0.1/mirthdb",
            "MIRTH_MODE": "takeover",
            "MIRTH_SEQUENCE_BLOCK_SIZE": "50",
            "PANNIER_DATABASE_SEQUENCE_BLOCK_SIZE": "500",
            "MIRTH_SERVER_ID": "0b8e7d0e-1111-2222-3333-444444444444",
            "MIRTH_CLUSTER_ENABLED": "true",
            "MIRTH_MAP_BACKEND": "redis",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        },
    )
    assert config["database.url"] == "postgresql+psycopg://u:pw@127.0.0.1/mirthdb"
    assert config["database.mode"] == "takeover"
    assert config["database.sequence_block_size"] == 500, "PANNIER_* wins over MIRTH_*"
    assert config["server.id"] == "0b8e7d0e-1111-2222-3333-444444444444"
    assert config["cluster.enabled"] is True
    assert config["cluster.map_backend"] == "redis"
    assert config["cluster.redis_url"] == "redis://127.0.0.1:6379/0"
    assert (
        config.origin("database.sequence_block_size")
        == "environment PANNIER_DATABASE_SEQUENCE_BLOCK_SIZE"
    )


def test_db_variables_compose_a_url() -> None:
    config = load_config(
        None,
        environ={
            "DB_TYPE": "mysql",
            "DB_HOST": "db.local",
            "DB_PORT": "3307",
            "DB_NAME": "mirthdb",
            "DB_USER": "mirth",
            "DB_PASSWORD": "p@ss",
        },
    )
    assert config["database.url"] == "mysql+pymysql://mirth:p%40ss@db.local:3307/mirthdb"
    assert "p%40ss" not in str(config.redacted()), "passwords are never shown"


def test_secret_indirection(tmp_path: Path) -> None:
    secret = tmp_path / "db-url"
    secret.write_text("mysql+pymysql://u:hidden@h/db\n")
    config = load_config(write(tmp_path, f'[database]\nurl = "$file:{secret}"\n'), environ={})
    assert config["database.url"] == "mysql+pymysql://u:hidden@h/db"
    assert "hidden" not in str(config.redacted())
    with pytest.raises(ConfigError, match=r"database.url = '\$env:NOPE'.*NOPE is not set"):
        load_config(write(tmp_path, '[database]\nurl = "$env:NOPE"\n'), environ={})


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        (
            '[database]\nmode = "fast"\n',
            {},
            r"database.mode = 'fast' \(from .*pannier.toml\): expected one of standalone, "
            r"takeover, auto",
        ),
        (
            "",
            {"PANNIER_API_PORT": "eighty"},
            r"api.port = 'eighty' \(from environment PANNIER_API_PORT\): expected a whole number",
        ),
        ("[api]\nport = 70000\n", {}, r"api.port = 70000 .*expected a port number from 0 to 65535"),
        (
            "",
            {"MIRTH_SEQUENCE_BLOCK_SIZE": "0"},
            r"database.sequence_block_size = 0 \(from environment MIRTH_SEQUENCE_BLOCK_SIZE\): "
            r"expected a whole number of at least 1",
        ),
        ('[database]\nurl = "not a url"\n', {}, r"database.url = 'not a url'.*SQLAlchemy URL"),
        ("[databse]\nurl = 'x'\n", {}, r"unknown section \[databse\]; expected one of: api, "),
        (
            "[database]\nadress = 'x'\n",
            {},
            r"database.adress: unknown key .* accepts: async_batches, mode, ",
        ),
        ("[server]\nshadow_mode = 'yes'\n", {}, r"server.shadow_mode = 'yes'.*true or false"),
        ("not toml ===", {}, r"not valid TOML"),
        ("", {"DB_TYPE": "oracle"}, r"DB_TYPE = 'oracle'.*expected one of mariadb, mysql"),
    ],
)
def test_invalid_values_name_key_value_and_expectation(tmp_path, text, environ, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), environ=environ)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_every_key_is_in_the_configuration_reference() -> None:
    from pannier.config import ALIASES, SCHEMA

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for section, settings in SCHEMA.items():
        assert f"## [{section}]" in doc
        for key, setting in settings.items():
            assert f"`PANNIER_{section.upper()}_{key.upper()}` | {setting.help}" in doc, (
                f"{section}.{key} is missing or out of date in docs/configuration.md"
            )
    for alias in ALIASES:
        assert f"`{alias}`" in doc
