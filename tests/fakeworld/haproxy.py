"""A fake HAProxy: it routes by the haproxy.cfg it loaded at its last start or reload, and its
health checks ask the fake Patroni the same URIs the real checks do (GET /primary, /replica).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.fakeworld.wire import CallError

if TYPE_CHECKING:
    from tests.fakeworld.world import FakeWorld

CHECK_URI = {"primary": "primary", "replicas": "replica"}


@dataclass(frozen=True)
class Server:
    backend: str
    name: str
    address: str  # the Patroni REST API the check asks ("host:port")


@dataclass(frozen=True)
class LoadedConfig:
    stats: str  # "host:port" of `listen stats`
    servers: tuple[Server, ...]


def parse_cfg(text: str) -> LoadedConfig:
    """The few lines of our own haproxy.cfg the fake needs: sections, binds and servers."""
    section, stats, servers = "", "", []
    for raw in text.splitlines():
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] in ("listen", "backend", "frontend", "global", "defaults"):
            section = " ".join(words[:2])
        elif words[0] == "bind" and section == "listen stats":
            stats = words[1]
        elif words[0] == "server" and section.startswith("backend "):
            host = words[2].rsplit(":", 1)[0]
            port = words[words.index("port") + 1] if "port" in words else "8008"
            servers.append(Server(section.split()[1], words[1], f"{host}:{port}"))
    return LoadedConfig(stats, tuple(servers))


def stats_csv(world: FakeWorld, url: str) -> str:
    """GET <stats url>;csv of the HAProxy listening there, or a connection error."""
    where = url.split("://", 1)[-1].split("/", 1)[0]
    for m in world.machines.values():
        proc = m.proc("haproxy")
        if proc is None or not proc.ready or m.frozen:
            continue
        cfg = parse_cfg((proc.loaded or b"").decode())
        if cfg.stats != where:
            continue
        rows = ["# pxname,svname,status,"]
        for backend in sorted({s.backend for s in cfg.servers}):
            rows.append(f"{backend},FRONTEND,OPEN,")
            for s in (s for s in cfg.servers if s.backend == backend):
                rows.append(f"{backend},{s.name},{_check(world, s)},")
            rows.append(f"{backend},BACKEND,UP,")
        return "\n".join(rows) + "\n"
    raise CallError(f"{url}: connection refused")


def _check(world: FakeWorld, s: Server) -> str:
    uri = CHECK_URI.get(s.backend)
    if uri is None:
        return "no check"
    try:
        code, _ = getattr(world.patroni_api, uri)(f"http://{s.address}")
    except CallError:
        return "DOWN"
    return "UP" if code == 200 else "DOWN"
