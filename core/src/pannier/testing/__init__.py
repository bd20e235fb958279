"""Conformance kits: checks every implementation of a Pannier interface should pass.

Built-in implementations run them in Pannier's own test suite; a third-party plugin author
calls the same functions from their tests::

    from pannier.testing import check_map_backend

    async def test_my_backend_conforms():
        await check_map_backend(MyBackend(...))

Each kit raises ``AssertionError`` with a message saying which expectation failed.
"""

from pannier.testing.connectors import (
    KIT_CHANNEL_ID,
    KIT_TARGET_CHANNEL_ID,
    RecordingRouter,
    check_connector,
)
from pannier.testing.datatypes import check_datatype
from pannier.testing.docs import check_properties_documented
from pannier.testing.kits import check_cluster_bus, check_map_backend, check_sequence_allocator

__all__ = [
    "KIT_CHANNEL_ID",
    "KIT_TARGET_CHANNEL_ID",
    "RecordingRouter",
    "check_cluster_bus",
    "check_connector",
    "check_datatype",
    "check_map_backend",
    "check_properties_documented",
    "check_sequence_allocator",
]
