"""The nspawn provider's pure parts: the Debian mirror from apt's sources, the lab network's
names and addresses, the rootfs cache key."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from pgha_operator.core import topology
from pgha_operator.core.errors import PermanentError
from pgha_operator.core.spec import load
from pgha_operator.shell.providers.nspawn_net import LabNetwork, operator_address
from pgha_operator.shell.providers.nspawn_rootfs import (
    debian_mirror,
    parse_deb822_sources,
    parse_one_line_sources,
    recipe_key,
)

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_deb822_sources() -> None:
    assert list(parse_deb822_sources(DEB822)) == [
        ("http://deb.debian.org/debian", ["bookworm", "bookworm-updates"], ["main"]),
        ("http://deb.debian.org/debian-security", ["bookworm-security"], ["main"]),
    ]


def test_deb822_disabled_and_source_stanzas_are_skipped() -> None:
    text = "Types: deb-src\nURIs: http://a/\nSuites: bookworm\nComponents: main\n\n"
    text += "Types: deb\nEnabled: no\nURIs: http://b/\nSuites: bookworm\nComponents: main\n"
    assert list(parse_deb822_sources(text)) == []


def test_one_line_sources_with_options() -> None:
    text = (
        "# comment\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\n"
    )
    assert list(parse_one_line_sources(text)) == [
        ("http://mirror.example/debian", ["bookworm"], ["main", "contrib"])
    ]


def test_mirror_comes_from_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHA_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "other.list.disabled").write_text("deb http://x/ bookworm main")
    assert debian_mirror(tmp_path) == "http://deb.debian.org/debian"
    monkeypatch.setenv("PGHA_DEBIAN_MIRROR", "http://override.example/debian")
    assert debian_mirror(tmp_path) == "http://override.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHA_DEBIAN_MIRROR", raising=False)
    with pytest.raises(PermanentError, match="PGHA_DEBIAN_MIRROR"):
        debian_mirror(tmp_path)


def test_recipe_key_is_stable() -> None:
    assert recipe_key() == recipe_key()
    assert recipe_key().startswith("bookworm-")


def test_lab_network_names_fit_the_kernel_limits() -> None:
    cluster = load(["manifests/nspawn.yaml"])[0].cluster
    topo = topology.build(cluster)
    used = {m.address for m in topo.machines}
    net = LabNetwork(
        cluster.name,
        IPv4Network("10.231.0.0/24"),
        operator_address(IPv4Network("10.231.0.0/24"), used),
    )
    assert net.operator_address == IPv4Address("10.231.0.1")
    assert len(net.uplink) <= 15
    ports = {net.port(m.name) for m in topo.machines}
    assert len(ports) == len(topo.machines) and all(len(p) <= 15 for p in ports)
    # "_" never appears in a machine name: no machine's namespace can be the switch's.
    assert net.switch_ns not in {net.machine_ns(m.name) for m in topo.machines}
    assert net.machine_ns("switch") != net.switch_ns


def test_operator_address_skips_used_addresses() -> None:
    network = IPv4Network("10.9.0.0/29")
    assert operator_address(network, {"10.9.0.1", "10.9.0.2"}) == IPv4Address("10.9.0.3")
    with pytest.raises(PermanentError, match="no address left"):
        operator_address(network, {f"10.9.0.{i}" for i in range(1, 7)})
