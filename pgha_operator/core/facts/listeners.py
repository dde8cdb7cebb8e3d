"""Which TCP ports a host listens on: a pure parser of `ss -Hltn`, and the decision whether
one of them stands in the way of a daemon that binds a given address and port.

Fixture: tests/unit/fixtures/ss_listening.txt (real output of iproute2 6.1 on Debian 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address

WILDCARDS = frozenset({"0.0.0.0", "::", "*"})


@dataclass(frozen=True)
class Listener:
    address: str  # "0.0.0.0", "::" and "*" listen on every address
    port: int

    def __str__(self) -> str:
        return (
            f"[{self.address}]:{self.port}"
            if ":" in self.address
            else (f"{self.address}:{self.port}")
        )

    def blocks(self, address: str, port: int) -> bool:
        """A daemon binding address:port would fail (EADDRINUSE) beside this listener."""
        if port != self.port:
            return False
        if self.address in WILDCARDS or address in WILDCARDS:
            return True
        return _same(self.address, address)


def _same(a: str, b: str) -> bool:
    try:
        x, y = ip_address(a), ip_address(b)
    except ValueError:
        return a == b
    # An IPv4-mapped IPv6 listener ([::ffff:10.0.0.1]) holds the IPv4 address too.
    x = getattr(x, "ipv4_mapped", None) or x
    y = getattr(y, "ipv4_mapped", None) or y
    return x == y


def parse_ss_listeners(text: str) -> list[Listener]:
    """`ss -Hltn` lines (State Recv-Q Send-Q Local:Port Peer:Port) -> the local ends."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 5 or words[0] != "LISTEN":
            continue
        host, sep, port = words[3].rpartition(":")
        if not sep or not port.isdigit():
            continue
        host = host.removeprefix("[").removesuffix("]").split("%", 1)[0]  # 127.0.0.53%lo
        found.append(Listener(host, int(port)))
    return found
