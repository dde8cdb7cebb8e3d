"""etcd member configuration: the YAML file read by `etcd --config-file` (etcd 3.4).

The keys of that file are etcd's flag names without the leading dashes (plus
`enable-grpc-gateway`, which `etcd --help` does not list); etcd silently ignores a key it
does not know, so tests check them against that list and start a real etcd.

TLS is the exception: the config file does NOT read `cert-file`, `peer-cert-file`... at its
top level (etcd 3.4's embed.configYAML ignores them silently); it reads them nested under
`client-transport-security` and `peer-transport-security`, whose keys are the client-side
flag names (`cert-file`, `key-file`, `client-cert-auth`, `trusted-ca-file`).
"""

from __future__ import annotations

from typing import Any

from pgha_operator.core.render.context import RenderContext, dump_yaml
from pgha_operator.core.render.tls import daemon_tls


def etcd_config(ctx: RenderContext, machine: str) -> dict[str, Any]:
    topo = ctx.topology
    if machine not in topo.etcd:
        raise ValueError(f"{machine!r} is not an etcd member of cluster {topo.cluster!r}")
    unknown = sorted(ctx.etcd_joining - set(topo.etcd))
    if unknown:
        raise ValueError(f"etcd_joining names machines that are not etcd members: {unknown}")
    peer_url = topo.etcd_peer_url(machine)
    client_url = topo.etcd_client_url_at(topo.address(machine))
    return {
        "name": machine,
        "data-dir": ctx.layout(machine).etcd_data,
        "listen-peer-urls": peer_url,
        "initial-advertise-peer-urls": peer_url,
        # Only the machine's own address (no localhost, no 0.0.0.0): several clusters and
        # several local machines share one host's loopback network.
        "listen-client-urls": client_url,
        "advertise-client-urls": client_url,
        "initial-cluster": ",".join(f"{name}={topo.etcd_peer_url(name)}" for name in topo.etcd),
        "initial-cluster-state": "existing" if machine in ctx.etcd_joining else "new",
        "initial-cluster-token": topo.cluster,
        # Both ports on TLS with the machine's certificate, and only clients and peers
        # holding a certificate of the cluster's CA get in (the operator, Patroni, peers;
        # the /v3 gateway dials etcd's own gRPC with the server certificate, which is
        # also a client certificate).
        "client-transport-security": _transport_security(ctx, machine),
        "peer-transport-security": _transport_security(ctx, machine),
        "enable-v2": False,  # Patroni uses the v3 API (etcd3 DCS)
        # The HTTP/JSON gateway (/v3/...) that Patroni's etcd3 DCS and etcd3gw talk to. On
        # etcd 3.4 it is on by default for command-line flags but OFF with --config-file
        # (etcd-io/etcd#12093, fixed in 3.5): without it every /v3 call answers 404.
        "enable-grpc-gateway": True,
        "strict-reconfig-check": True,  # refuse membership changes that would lose quorum
        "pre-vote": True,  # a member coming back does not disrupt the leader
        "heartbeat-interval": 100,
        "election-timeout": 1000,
        # Patroni rewrites its leader key every loop_wait: without compaction the history
        # grows until the backend quota raises a NOSPACE alarm and etcd refuses writes.
        "auto-compaction-mode": "periodic",
        "auto-compaction-retention": "1h",
        "logger": "zap",
        "log-outputs": ["stderr"],  # the supervisor / journald captures it
        "log-level": "info",
    }


def _transport_security(ctx: RenderContext, machine: str) -> dict[str, Any]:
    paths = daemon_tls(ctx.layout(machine), "etcd")
    return {
        "cert-file": paths.cert,
        "key-file": paths.key,
        "trusted-ca-file": paths.ca,
        "client-cert-auth": True,
    }


def etcd_yaml(ctx: RenderContext, machine: str) -> str:
    header = (
        f"# etcd member {machine} of cluster {ctx.topology.cluster}; written by pgha-operator\n"
    )
    return header + dump_yaml(etcd_config(ctx, machine))
