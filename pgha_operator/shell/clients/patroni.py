"""Patroni REST client for actions: DCS config, reload, restart, switchover, reinit.

Patroni 4.1.5 answers the unsafe POST endpoints with text/html bodies (e.g. 200
'Successfully switched over to "pg2"', 202 'reload scheduled', 412 'leader name does not
match', 503 'I am the leader, can not reinitialize') and PATCH /config with the new
config as JSON. Unsafe endpoints need basic auth (401 'no auth header received').

The REST API speaks https only, with the node's certificate: every request verifies it
against the cluster's CA (`ClientTls.ca`). The credentials go on the unsafe calls only
(POST, PATCH), never on the GETs the observation and the fencer make every few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import requests

from pgha_operator.core.facts.patroni import (
    api_base,
    named_primaries,
    parse_cluster,
    parse_config,
    parse_patroni,
    streaming_replicas,
    with_streaming,
)
from pgha_operator.core.facts.types import PatroniFacts
from pgha_operator.shell.clients import transport
from pgha_operator.shell.clients.errors import ComponentError
from pgha_operator.shell.clients.tls import ClientTls

TIMEOUT = 5.0
# restart and switchover wait for PostgreSQL; Patroni answers when they are done.
SLOW_TIMEOUT = 90.0
OBSERVE_TIMEOUT = 1.5  # seconds per request while observing


class PatroniClient:
    def __init__(
        self,
        api_url: str,
        auth: tuple[str, str] | None = None,
        timeout: float = TIMEOUT,
        slow_timeout: float = SLOW_TIMEOUT,
        tls: ClientTls | None = None,
    ) -> None:
        self.api_url = api_base(api_url)  # accepts ".../patroni" as /cluster lists it
        self.auth = auth  # sent with the unsafe calls only
        self.timeout = timeout
        self.slow_timeout = slow_timeout
        self.tls = tls
        self._session = requests.Session()
        self._session.trust_env = False  # our own machines: no proxy or .netrc
        if tls is not None:
            self._session.verify = tls.ca

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        timeout: float | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> requests.Response:
        url = f"{self.api_url}/{path}"
        auth = None if method == "GET" else self.auth  # Patroni asks only on unsafe calls
        try:
            resp = self._session.request(
                method, url, json=json, auth=auth, timeout=timeout or self.timeout
            )
        except requests.Timeout as exc:
            raise ComponentError(f"Patroni {method} {url}: timed out", url=url) from exc
        except requests.RequestException as exc:
            reason = "connection refused" if "refused" in str(exc) else str(exc)
            raise ComponentError(f"Patroni {method} {url}: {reason}", url=url) from exc
        if resp.status_code not in ok:
            body = resp.text.strip()
            raise ComponentError(
                f"Patroni {method} {url}: HTTP {resp.status_code} {body[:300]}",
                url=url,
                status=resp.status_code,
                body=body,
            )
        return resp

    def _json(self, path: str) -> dict[str, Any]:
        resp = self._request("GET", path)
        try:
            return resp.json()
        except ValueError as exc:
            raise ComponentError(
                f"Patroni GET {resp.url}: not JSON: {resp.text[:200]}", url=resp.url
            ) from exc

    # ------------------------------------------------------------------ reads (raw JSON;
    # parse with core.facts.patroni's parse_cluster / parse_patroni / parse_config)

    def cluster(self) -> dict[str, Any]:
        return self._json("cluster")

    def patroni(self) -> dict[str, Any]:
        return self._json("patroni")

    def config(self) -> dict[str, Any]:
        return self._json("config")

    def is_primary(self) -> bool:
        """GET /primary: True on 200, False on 503 (a live replica); raises if unreachable.
        The fencer asks this every 200 ms: one connection of its own (shell/clients/transport.py)."""
        url = f"{self.api_url}/primary"
        ca = self.tls.ca if self.tls else None
        try:
            status = transport.status_of(url, timeout=self.timeout, ca=ca)  # safe: no auth
        except requests.Timeout as exc:
            raise ComponentError(f"Patroni GET {url}: timed out", url=url) from exc
        except requests.ConnectionError as exc:
            reason = "connection refused" if "refused" in str(exc) else str(exc)
            raise ComponentError(f"Patroni GET {url}: {reason}", url=url) from exc
        if status not in (200, 503):
            raise ComponentError(f"Patroni GET {url}: HTTP {status}", url=url, status=status)
        return status == 200

    def alive(self) -> bool:
        """GET /patroni answered at all (200, or 503 while PostgreSQL is down). Never raises.
        The fencer asks the other nodes this while it decides: the probe's connection, whose
        verifying context is kept, rather than requests' (a new context per connection)."""
        ca = self.tls.ca if self.tls else None
        try:
            status = transport.status_of(f"{self.api_url}/patroni", timeout=self.timeout, ca=ca)
        except requests.RequestException:
            return False
        return status in (200, 503)

    # ------------------------------------------------------------------ changes

    def patch_config(self, patch: dict[str, Any]) -> dict[str, Any]:
        """PATCH /config: merge `patch` into the DCS config (a key set to None is removed).
        Returns the resulting config."""
        return self._request("PATCH", "config", json=patch).json()

    def reload(self) -> str:
        """POST /reload: Patroni rereads patroni.yml (202 'reload scheduled')."""
        return self._request("POST", "reload", ok=(200, 202)).text

    def restart(self, only_if_pending: bool = False) -> str:
        """POST /restart of this node's PostgreSQL; with only_if_pending, Patroni skips
        the restart unless the node has pending_restart."""
        body = {"restart_pending": True} if only_if_pending else {}
        return self._request("POST", "restart", json=body, timeout=self.slow_timeout).text

    def switchover(self, leader: str, candidate: str | None = None) -> str:
        """POST /switchover from `leader` (must be the current leader: 412 otherwise) to
        `candidate` or, if None, to a healthy replica Patroni picks. In synchronous mode
        the candidate must be the sync standby (412 otherwise)."""
        body = {"leader": leader}
        if candidate:
            body["candidate"] = candidate
        return self._request("POST", "switchover", json=body, timeout=self.slow_timeout).text

    def reinitialize(self, force: bool = False) -> str:
        """POST /reinitialize: wipe this replica's data and clone it again. Answers at once
        (200 'reinitialize started'); 503 on the leader ('I am the leader, can not
        reinitialize'). Watch the member's state to see it finish."""
        body = {"force": True} if force else {}
        return self._request("POST", "reinitialize", json=body, timeout=self.slow_timeout).text

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PatroniClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- observation (never raises)


def _describe(url: str, exc: Exception) -> str:
    if isinstance(exc, requests.ConnectionError) and "refused" in str(exc):
        return f"{url}: connection refused"
    if isinstance(exc, requests.Timeout):
        return f"{url}: timed out"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"{url}: HTTP {exc.response.status_code} {exc.response.text.strip()[:200]}"
    return f"{url}: {type(exc).__name__}: {exc}"


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _get_json(url: str, path: str, tls: ClientTls | None, timeout: float) -> Any:
    resp = transport.get(f"{url}/{path}", timeout=timeout, tls=tls)
    resp.raise_for_status()
    return resp.json()


@dataclass(frozen=True)
class _Probe:
    primary: str | None = None  # the node's name when it answered /primary 200
    error: str | None = None  # set when it did not answer at all
    streaming: frozenset[str] = frozenset()  # replicas a primary streams to


def _probe_primary(url: str, tls: ClientTls | None, timeout: float) -> _Probe:
    """GET /primary: the answer's body is the node's /patroni status."""
    try:
        resp = transport.get(f"{url}/primary", timeout=timeout, tls=tls)
    except requests.RequestException as exc:
        return _Probe(error=_describe(url, exc))
    if resp.status_code != 200:
        return _Probe()  # 503: alive, not a primary
    try:
        body = resp.json()
        name, streaming = parse_patroni(body).name, streaming_replicas(body)
    except (ValueError, AttributeError, TypeError):
        name, streaming = "", frozenset()
    return _Probe(name or url, None, streaming)  # the URL stands in if the body had no name


def collect_patroni(
    api_urls: Sequence[str], tls: ClientTls | None = None, timeout: float = OBSERVE_TIMEOUT
) -> PatroniFacts:
    """GET /primary on every node, then GET /cluster and /config from one node (safe
    endpoints: no credentials), each server verified against `tls.ca`.

    The node that answered /primary 200 is asked first: a primary still holds the leader
    key, so its cached DCS view is the freshest. Never raises.
    """
    urls = [api_base(u) for u in api_urls]
    with nullcontext(transport.READERS) as pool:
        probes = list(pool.map(lambda u: _probe_primary(u, tls, timeout), urls))
    primaries = frozenset(p.primary for p in probes if p.primary)
    streaming = frozenset().union(*(p.streaming for p in probes))
    answered_primary = [u for u, p in zip(urls, probes, strict=True) if p.primary]
    alive = [u for u, p in zip(urls, probes, strict=True) if p.error is None]
    order = answered_primary + [u for u in alive if u not in answered_primary]
    order += [u for u in urls if u not in order]  # a node may recover between requests

    errors = [p.error for p in probes if p.error]
    for url in order:
        try:
            members = parse_cluster(_get_json(url, "cluster", tls, timeout))
            members = with_streaming(members, streaming)
            primaries = named_primaries(primaries, members)
        except (requests.RequestException, ValueError, KeyError) as exc:
            errors.append(_describe(url, exc))
            continue
        try:
            config = parse_config(_get_json(url, "config", tls, timeout))
        except (requests.RequestException, ValueError) as exc:
            return PatroniFacts(
                reachable=False,
                members=members,
                primaries=primaries,
                error=f"GET /config failed: {_describe(url, exc)}",
                no_dcs_config=_status(exc) == 502,  # Patroni's answer before bootstrap
            )
        return PatroniFacts(
            reachable=True, members=members, dynamic_config=config, primaries=primaries
        )
    detail = "; ".join(dict.fromkeys(errors)) or "no REST API URLs given"
    return PatroniFacts(
        reachable=False, primaries=primaries, error=f"no Patroni node answered: {detail}"
    )
