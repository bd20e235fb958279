"""A well-formed third-party plugin used by the discovery tests."""

import argparse

from pannier import (
    CliCommand,
    ConnectorType,
    DestinationConnector,
    MapBackendSpec,
    Response,
    Status,
    hookimpl,
)
from pannier.maps import MemoryMapBackend


class Echo(DestinationConnector):
    def __init__(self, setup):
        self.setup = setup

    async def send(self, request):
        return Response(Status.SENT, message=str(request.encoded))


def _hello(args: argparse.Namespace) -> int:
    print(f"hello from testgood, {args.name}")
    return 0


@hookimpl
def pannier_register_connectors():
    return [ConnectorType("Test Echo", "destination", Echo, defaults={"prefix": ""})]


@hookimpl
def pannier_register_map_backends():
    return [MapBackendSpec("test-memory", lambda settings: MemoryMapBackend())]


@hookimpl
def pannier_register_commands():
    return [CliCommand("hello", "say hello", lambda p: p.add_argument("name"), _hello)]


@hookimpl
def pannier_config_defaults():
    return {"testgood": {"greeting": "hi", "repeat": 1}}


@hookimpl
def pannier_engine_started(engine):
    engine.testgood_started = True
