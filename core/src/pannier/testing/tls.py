"""Certificates for TLS tests: a pytest plugin that ships with ``pannier-core``.

Installed as the ``pytest11`` entry point ``pannier_tls``: any test suite in an environment
with ``pannier-core`` (a connector plugin's, a third party's) can ask for the ``pki`` fixture,
PEM files made at test time with ``trustme`` (skipped with a message when it is missing)
so no key material is ever committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class Pki:
    """Paths of PEM files: a CA (``ca``), a server certificate for ``localhost`` and
    ``127.0.0.1`` (``server_*``), a client certificate (``client_*``), a certificate naming
    only ``localhost`` (``named_*``), and a client certificate from another CA (``other_ca``,
    ``stranger_*``) that the first CA does not trust."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    named_cert: str
    named_key: str
    other_ca: str
    stranger_cert: str
    stranger_key: str

    def listener(self, client_auth: str = "none", **extra: Any) -> dict[str, Any]:
        """A listener's TLS properties (``pannier.net``'s names) serving ``server_*``;
        ``client_auth`` other than ``none`` also trusts ``ca`` for client certificates."""
        properties: dict[str, Any] = {
            "tlsEnabled": True,
            "tlsCertFile": self.server_cert,
            "tlsKeyFile": self.server_key,
        }
        if client_auth != "none":
            properties.update(tlsCaFile=self.ca, tlsClientAuth=client_auth)
        return {**properties, **extra}

    def sender(self, certificate: str | None = None, **extra: Any) -> dict[str, Any]:
        """A sender's TLS properties trusting ``ca``; ``certificate`` (``client``,
        ``stranger``, ``named``...) also presents that client certificate."""
        properties: dict[str, Any] = {"tlsEnabled": True, "tlsCaFile": self.ca}
        if certificate is not None:
            properties.update(
                tlsCertFile=getattr(self, f"{certificate}_cert"),
                tlsKeyFile=getattr(self, f"{certificate}_key"),
            )
        return {**properties, **extra}


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A fresh :class:`Pki` in ``tmp_path``."""
    trustme = pytest.importorskip("trustme", reason="TLS tests need trustme (the dev extra)")
    ca, other = trustme.CA(), trustme.CA()
    leaves = {
        "server": ca.issue_cert("localhost", "127.0.0.1"),
        "client": ca.issue_cert("client.example"),
        "named": ca.issue_cert("localhost"),
        "stranger": other.issue_cert("client.example"),
    }
    paths: dict[str, str] = {}
    for name, blob in (("ca", ca.cert_pem), ("other_ca", other.cert_pem)):
        paths[name] = str(tmp_path / f"{name}.pem")
        blob.write_to_path(paths[name])
    for name, leaf in leaves.items():
        paths[f"{name}_cert"] = str(tmp_path / f"{name}_cert.pem")
        paths[f"{name}_key"] = str(tmp_path / f"{name}_key.pem")
        leaf.cert_chain_pems[0].write_to_path(paths[f"{name}_cert"])
        leaf.private_key_pem.write_to_path(paths[f"{name}_key"])
    return Pki(**paths)
