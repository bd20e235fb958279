"""Core's own plugin: the embedded defaults, registered through the same hooks as any plugin.

Entry point ``core`` in the ``pannier.plugins`` group points here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pannier.bus import ClusterBusSpec, LocalBus
from pannier.cli import commands
from pannier.cli.bench import BENCH_COMMAND
from pannier.extensions import CliCommand
from pannier.hookspecs import hookimpl
from pannier.maps import MapBackendSpec, MemoryMapBackend
from pannier.scripting import PYTHON, ScriptEngineSpec
from pannier.sequences import BlockAllocator, SequenceAllocatorSpec, SingleAllocator


def _block(settings: Mapping[str, Any]) -> BlockAllocator:
    return BlockAllocator(int(settings.get("block_size", 100)))


@hookimpl
def pannier_register_map_backends() -> Sequence[MapBackendSpec]:
    return [
        MapBackendSpec(
            "memory",
            lambda _settings: MemoryMapBackend(),
            description="maps in this process's memory (not shared)",
        )
    ]


@hookimpl
def pannier_register_sequence_allocators() -> Sequence[SequenceAllocatorSpec]:
    return [
        SequenceAllocatorSpec(
            "block", _block, description="N ids per locked read of D_MSQ (default)"
        ),
        SequenceAllocatorSpec(
            "single",
            lambda _settings: SingleAllocator(),
            description="one locked read per id, exactly as Java Mirth",
        ),
    ]


@hookimpl
def pannier_register_cluster_buses() -> Sequence[ClusterBusSpec]:
    return [
        ClusterBusSpec("local", lambda _settings: LocalBus(), description="in-process events only")
    ]


@hookimpl
def pannier_register_script_engines() -> Sequence[ScriptEngineSpec]:
    return [PYTHON]


@hookimpl
def pannier_register_commands() -> Sequence[CliCommand]:
    from pannier.cli.client_commands import client_commands

    return [*commands.core_commands(), BENCH_COMMAND, *client_commands()]
