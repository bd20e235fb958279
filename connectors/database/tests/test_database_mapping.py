"""Mirth's JDBC URLs, column names and value texts, as the connectors map them."""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pannier_database.connection import database_url
from pannier_database.results import fix_column_name, row_xml, value_text
from pannier_database.statements import prepare
from sqlalchemy.dialects import postgresql


@pytest.mark.parametrize(
    ("jdbc", "expected"),
    [
        ("jdbc:mysql://db.example:3306/mirthdb", "mysql+pymysql://db.example:3306/mirthdb"),
        ("jdbc:mariadb://db.example/his?user=app", "mysql+pymysql://app@db.example/his"),
        (
            "jdbc:postgresql://10.0.0.5:5432/lab?user=a&password=b&ssl=false",
            "postgresql+psycopg://a:b@10.0.0.5:5432/lab",
        ),
        ("jdbc:sqlite:/var/data/x.db", "sqlite:////var/data/x.db"),
    ],
)
def test_jdbc_urls_map_to_sqlalchemy_urls(jdbc: str, expected: str) -> None:
    url = database_url({"url": jdbc}, "/base", "test")
    assert url.render_as_string(hide_password=False) == expected


def test_username_and_password_properties_replace_the_urls() -> None:
    url = database_url(
        {"url": "jdbc:mysql://h:3306/db?user=old", "username": "app", "password": "p@ss"},
        "/base",
        "test",
    )
    assert (url.username, url.password, url.host, url.port) == ("app", "p@ss", "h", 3306)


def test_relative_sqlite_database_is_under_the_base_directory(tmp_path: Path) -> None:
    url = database_url({"url": "sqlite:///data/x.db"}, str(tmp_path), "test")
    assert url.database == str(tmp_path / "data" / "x.db")
    assert database_url({"url": "sqlite://"}, str(tmp_path), "test").database is None


def test_column_names_are_fixed_as_mirth_fixes_them() -> None:
    # The cases of Mirth's DatabaseReceiverTest.
    assert fix_column_name("") == "_"
    assert fix_column_name("    ") == "_"
    assert [fix_column_name(n) for n in (".abc", "-abc", "0abc", " abc")] == ["_abc"] * 4
    assert fix_column_name("ab  c") == "ab_c"
    assert fix_column_name(":ab c") == ":ab_c"
    assert fix_column_name("[ab c ]") == "_ab_c_"
    assert fix_column_name("azAZ09-_.") == "azAZ09-_."


def test_values_are_written_as_java_writes_them() -> None:
    assert value_text(True, "utf-8") == "true"
    assert value_text(datetime.datetime(2024, 1, 31, 10, 30), "utf-8") == "2024-01-31 10:30:00.0"
    assert (
        value_text(datetime.datetime(2024, 1, 31, 10, 30, 0, 120000), "utf-8")
        == "2024-01-31 10:30:00.12"
    )
    assert value_text(datetime.date(2024, 1, 31), "utf-8") == "2024-01-31"
    assert value_text(Decimal("12.50"), "utf-8") == "12.50"
    assert value_text("caf\xe9".encode("latin-1"), "latin-1") == "caf\xe9"
    assert value_text(None, "utf-8") is None


def test_text_is_escaped_and_carriage_returns_kept() -> None:
    xml = row_xml({"obx": "a\rb & <c>", "empty": "", "gone": None}, "utf-8")
    assert xml == "<result><obx>a&#13;b &amp; &lt;c&gt;</obx><empty></empty></result>"


def test_references_become_bound_parameters_and_other_colons_stay_text() -> None:
    statement = prepare("SELECT ${a}::int, '10:30', x${b}, :c FROM t WHERE y = ${a}")
    assert statement.names == ("a", "b", "a")
    compiled = statement.clause.compile(dialect=postgresql.psycopg.dialect())
    assert str(compiled) == (
        "SELECT %(pannier_p0)s ::int, '10:30', x %(pannier_p1)s, :c FROM t WHERE y = %(pannier_p2)s"
    )
    assert statement.parameters(["1", "2", "1"]) == {
        "pannier_p0": "1",
        "pannier_p1": "2",
        "pannier_p2": "1",
    }
