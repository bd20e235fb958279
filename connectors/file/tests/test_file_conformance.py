"""The File Reader and File Writer pass the kernel's connector conformance kit."""

from __future__ import annotations

import itertools
from pathlib import Path

from pannier.testing import check_connector
from pannier_file.plugin import pannier_register_connectors


def connector(transport: str):
    return next(c for c in pannier_register_connectors() if c.transport_name == transport)


async def test_file_reader_conforms(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    counter = itertools.count()

    async def deliver(_info: object) -> None:
        (inbox / f"m{next(counter)}.txt").write_text("MSH|^~\\&|A\r")

    await check_connector(
        connector("File Reader"),
        properties={
            "directory": str(inbox),
            "pollingFrequency": 20,
            "fileAge": 0,
            "afterProcessingAction": "DELETE",
        },
        deliver=deliver,
    )


async def test_file_writer_conforms(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where a directory should be")
    await check_connector(
        connector("File Writer"),
        properties={"directory": str(tmp_path / "out"), "outputPattern": "one.txt"},
        failing_properties={"directory": str(tmp_path / "blocked"), "outputPattern": "x.txt"},
    )
    assert (tmp_path / "out" / "one.txt").read_text().startswith("MSH|")
