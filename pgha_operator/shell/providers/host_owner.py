"""Which cluster, of which identity, a host the operator did not make belongs to (ssh).

`/etc/pgha/<cluster>/owner.json` records the cluster's name and id (shell/state/identity.py)
and what preparing the host changed outside the cluster's own directories (packages
installed, their units disabled, the Patroni venv made). It is written before anything else
is changed; an operator of another identity meeting it refuses the host instead of re-keying
it. A host without it is checked first: a port or a path the cluster needs that something
else already holds refuses the host, with the reason.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pgha_operator.core.errors import PermanentError
from pgha_operator.core.facts.listeners import parse_ss_listeners
from pgha_operator.core.host_claims import path_problems, paths_claimed, port_problems, ports_needed
from pgha_operator.core.spec import Cluster
from pgha_operator.core.topology import Machine, host_dirs
from pgha_operator.shell.hosts.base import Host

OWNER_FILE = "owner.json"


class HostRefused(PermanentError):
    """The host is not the cluster's to take: the message says why and what to do."""


@dataclass(frozen=True)
class Owner:
    cluster: str
    cluster_id: str
    installed: tuple[str, ...] = ()  # Debian packages apt installed for the cluster
    disabled: tuple[str, ...] = ()  # the units of those packages, disabled
    patroni_venv: str | None = None  # made by the operator (not there before)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    def merged(
        self, installed: tuple[str, ...], disabled: tuple[str, ...], venv: str | None
    ) -> Owner:
        """This record plus what one more preparation changed."""
        return Owner(
            self.cluster,
            self.cluster_id,
            tuple(sorted({*self.installed, *installed})),
            tuple(sorted({*self.disabled, *disabled})),
            self.patroni_venv or venv,
        )


def owner_path(cluster: str) -> str:
    return f"{host_dirs(cluster)[0]}/{OWNER_FILE}"


def parse_owner(raw: bytes, where: str) -> Owner:
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        cluster, cluster_id = data["cluster"], data["cluster_id"]
        if not isinstance(cluster, str) or not isinstance(cluster_id, str):
            raise ValueError("cluster and cluster_id must be strings")
    except (ValueError, KeyError) as exc:
        raise HostRefused(
            f"{where} is damaged ({exc}): the host is left alone; restore the file (a JSON "
            'object with "cluster" and "cluster_id", the id being the state dir\'s cluster-id) '
            "or, if nothing of the cluster is on that host any more, remove its directories"
        ) from None
    venv = data.get("patroni_venv")
    return Owner(
        cluster,
        cluster_id,
        tuple(str(p) for p in data.get("installed") or []),
        tuple(str(u) for u in data.get("disabled") or []),
        str(venv) if venv else None,
    )


def read_owner(host: Host, cluster: str) -> Owner | None:
    path = owner_path(cluster)
    raw = host.read(path)
    return None if raw is None else parse_owner(raw, f"{host.name}:{path}")


def identity_problem(host: str, owner: Owner, cluster_id: str | None) -> str | None:
    """Why an operator of identity `cluster_id` must not act on a host `owner` records."""
    if owner.cluster_id == cluster_id:
        return None
    return (
        f"host {host} belongs to cluster {owner.cluster} of identity {owner.cluster_id} "
        f"({owner_path(owner.cluster)}), and this operator's state dir has "
        f"{cluster_id or 'no identity'}: it is another operator's cluster, and taking it over "
        "would re-key every password. Act on it with that cluster's state dir (a copy of it "
        "for a standby operator), or destroy that cluster first"
    )


def claim_problems(host: Host, cluster: Cluster, machine: Machine) -> list[str]:
    """Ports and paths the cluster needs on a host it has not prepared yet that something
    else already holds."""
    res = host.run(["ss", "-Hltn"])
    problems = port_problems(
        parse_ss_listeners(res.stdout), machine.address, ports_needed(cluster, machine)
    )
    paths = paths_claimed(cluster.name, machine)
    found = host.run(
        [
            "sh",
            "-c",
            'for p; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done',
            "sh",
            *paths,
        ],  # fmt: skip
    )
    return problems + path_problems(found.stdout.split())


def check_claims(host: Host, cluster: Cluster, machine: Machine) -> None:
    problems = claim_problems(host, cluster, machine)
    if problems:
        raise HostRefused(
            f"host {host.name} cannot take machine {machine.name} of cluster {cluster.name}; "
            "nothing was changed on it:\n  " + "\n  ".join(problems) + "\nFree them (or "
            "choose other ports in the manifest), or use another host"
        )
