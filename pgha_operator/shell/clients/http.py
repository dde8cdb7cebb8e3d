"""The HTTP session every client of this process shares (etcd, Patroni, HAProxy).

Measured on the demo (bench/idle.py): a module-level `requests.get` costs ~0.8 ms of CPU,
most of it building a Session and reading proxy settings from the environment; one shared
Session that ignores the environment costs ~0.55 ms and keeps connections open where the
server allows it (etcd, HAProxy; Patroni's REST API closes after each answer). The
operator only speaks to its own machines, which no proxy stands between.

requests' Session is used from several threads (the observation's pools): its connection
pools are thread-safe, and nothing here uses cookies or per-request session state.
"""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

# Connections kept per host and hosts kept: 89 Patroni nodes, a few etcd members.
POOL_HOSTS = 128
POOL_PER_HOST = 4


def new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy or .netrc lookups: two thirds of the cost
    adapter = HTTPAdapter(pool_connections=POOL_HOSTS, pool_maxsize=POOL_PER_HOST)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


SESSION = new_session()
