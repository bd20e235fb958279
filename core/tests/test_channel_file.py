"""Channel files: the example loads into Mirth's model; mistakes are named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest
from pannier.model.channel_file import ChannelFormatError, channel_from_dict, load_channel_file
from pannier.model.status import StorageMode

ROOT = Path(__file__).resolve().parents[2]


def test_example_channel_loads() -> None:
    channel = load_channel_file(ROOT / "examples" / "channels" / "adt-to-file.toml")
    assert channel.name == "ADT to file"
    assert channel.source.transportName == "TCP Listener"
    assert channel.source.source.responseVariable == "Auto-generate (Destinations completed)"
    assert channel.source.properties["port"] == 6661
    assert [d.transportName for d in channel.destinations] == ["File Writer"]
    assert channel.properties.messageStorageMode == StorageMode.DEVELOPMENT
    assert channel.nextMetaDataId == 2
    assert [c.name for c in channel.properties.metaDataColumns] == ["SOURCE", "TYPE"]


def test_chains_follow_wait_for_previous() -> None:
    channel = channel_from_dict(
        {
            "name": "c",
            "source": {"transportName": "TCP Listener"},
            "destinations": [
                {"name": n, "transportName": "File Writer", "waitForPrevious": w}
                for n, w in (("a", True), ("b", True), ("c", False), ("d", True))
            ],
        }
    )
    assert [[d.name for d in chain] for chain in channel.chains()] == [["a", "b"], ["c", "d"]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": {"transportName": "x"}}, r"'name' is required"),
        ({"name": "c", "source": {}}, r"source: 'transportName' is required"),
        (
            {"name": "c", "source": {"transportName": "x", "respondAfterProcesing": True}},
            r"source: unknown key 'respondAfterProcesing'",
        ),
        (
            {"name": "c", "source": {"transportName": "x", "processingThreads": "4"}},
            r"source.processingThreads: expected int",
        ),
        ({"name": "c", "id": "abc", "source": {"transportName": "x"}}, r"id: expected a UUID"),
        (
            {
                "name": "c",
                "source": {"transportName": "x"},
                "properties": {"messageStorageMode": "FAST"},
            },
            r"messageStorageMode: expected one of",
        ),
        (
            {
                "name": "c",
                "source": {"transportName": "x"},
                "destinations": [
                    {"name": "a", "transportName": "y"},
                    {"name": "a", "transportName": "y"},
                ],
            },
            r"'a' is used twice",
        ),
        (
            {
                "name": "c",
                "source": {"transportName": "x"},
                "destinations": [
                    {"name": "a", "transportName": "y", "metaDataId": 3},
                    {"name": "b", "transportName": "y", "metaDataId": 3},
                ],
            },
            r"share metaDataId 3",
        ),
    ],
)
def test_mistakes_are_named(data, message) -> None:
    with pytest.raises(ChannelFormatError, match=message):
        channel_from_dict(data)
