"""The operator's own TLS files, as its clients use them (paths on the operator's host)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientTls:
    ca: str  # the cluster's CA: every server certificate is verified against it
    cert: str  # the operator's client certificate (etcd requires one)
    key: str
