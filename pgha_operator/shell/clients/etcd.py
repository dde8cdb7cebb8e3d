"""etcd client for actions: membership changes and the few key operations the operator needs.

Built on etcd3gw (the /v3 HTTP gateway). etcd3gw has no membership calls, so those use its
raw `client.post(client.get_url("/cluster/member/..."))`. Member ids are the decimal
strings the gateway returns (etcdctl shows the same ids in hex).

etcd requires TLS with a client certificate of the cluster's CA: every call takes the
operator's `ClientTls` (None only for a test's plain etcd).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from etcd3gw import exceptions as gw_exc
from etcd3gw.client import Etcd3Client

from pgha_operator.core.facts.etcd import (
    parse_health,
    parse_member,
    parse_member_list,
    parse_status,
)
from pgha_operator.core.facts.types import EtcdFacts, EtcdMember
from pgha_operator.core.leadership import LeaseGuard
from pgha_operator.shell.clients import transport
from pgha_operator.shell.clients.errors import ComponentError
from pgha_operator.shell.clients.tls import ClientTls

T = TypeVar("T")
TIMEOUT = 3.0
OBSERVE_TIMEOUT = 1.5  # seconds per request: a cycle must not hang on a dead member


# HTTP statuses etcd3gw maps to its exception types (it keeps the body in detail_text).
_GW_STATUS: dict[type[Exception], int] = {
    gw_exc.PreconditionFailedError: 412,
    gw_exc.InternalServerError: 500,
}


class EtcdClient:
    """Talks to the first of `client_urls` that answers; sticks with it while it works."""

    def __init__(
        self, client_urls: Sequence[str], timeout: float = TIMEOUT, tls: ClientTls | None = None
    ) -> None:
        if not client_urls:
            raise ValueError("EtcdClient needs at least one client URL")
        self.client_urls = tuple(u.rstrip("/") for u in client_urls)
        self.tls = tls
        self._clients = [self._make(u, timeout, tls) for u in self.client_urls]
        self._current = 0

    @staticmethod
    def _make(url: str, timeout: float, tls: ClientTls | None) -> Etcd3Client:
        parts = urlsplit(url)
        # api_path fixed: etcd 3.4+ serves /v3/, and discovery would cost a request.
        return Etcd3Client(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 2379,
            protocol=parts.scheme or "https",
            timeout=timeout,
            api_path="/v3/",
            session=session_for(tls),
        )

    def _call(self, what: str, fn: Callable[[Etcd3Client], T]) -> T:
        """Run fn on the current endpoint, failing over on connection errors and 503
        (an endpoint without quorum, or a learner, refuses with 503)."""
        errors: list[str] = []
        status: int | None = None
        body: str | None = None
        n = len(self._clients)
        for i in range(n):
            idx = (self._current + i) % n
            client, url = self._clients[idx], self.client_urls[idx]
            try:
                result = fn(client)
            except (gw_exc.ConnectionFailedError, gw_exc.ConnectionTimeoutError) as exc:
                errors.append(f"{url}: {_short(_gw_text(exc)) or type(exc).__name__}")
                if exc.args:  # etcd answered (503/504 + reason phrase), not a socket error
                    status = 503 if isinstance(exc, gw_exc.ConnectionFailedError) else 504
                    body = exc.detail_text
                continue
            except OSError as exc:
                # requests' own errors before any connection: the CA or the operator's
                # certificate file is missing or unreadable (the same for every endpoint).
                raise ComponentError(f"etcd {what} via {url} failed: {exc}", url=url) from exc
            except gw_exc.Etcd3Exception as exc:
                text = _gw_text(exc)
                raise ComponentError(
                    f"etcd {what} via {url} failed: {text}",
                    url=url,
                    status=_GW_STATUS.get(type(exc)),
                    body=exc.detail_text,
                ) from exc
            self._current = idx
            return result
        raise ComponentError(
            f"etcd {what}: no endpoint answered ({'; '.join(errors)})",
            url=self.client_urls[0],
            status=status,
            body=body,
        )

    def _member_call(self, path: str, what: str, body: dict[str, Any]) -> Any:
        return self._call(what, lambda c: c.post(c.get_url(f"/cluster/member/{path}"), json=body))

    # ------------------------------------------------------------------ membership

    def member_list(self) -> tuple[EtcdMember, ...]:
        return parse_member_list(self._member_call("list", "member list", {}))

    def add_member(self, peer_urls: Sequence[str], learner: bool = True) -> EtcdMember:
        """Add a member (a learner by default: it cannot vote until promoted).

        The new member must then be started with --initial-cluster-state existing. etcd
        allows one learner at a time (412 "too many learner members in cluster") and,
        with its default strict reconfig check, refuses any add (503 "unhealthy cluster")
        unless every voter has been connected for the last 5 s: remove a dead member
        before adding its replacement, and expect 503 for a few seconds after a start.
        """
        body: dict[str, Any] = {"peerURLs": list(peer_urls)}
        if learner:
            body["isLearner"] = True
        data = self._member_call("add", f"member add {list(peer_urls)}", body)
        return parse_member(data["member"])

    def promote_member(self, member_id: str) -> tuple[EtcdMember, ...]:
        """Promote a learner to voter; returns the new member list. Fails with 412 while
        the learner is not started or not yet in sync with the leader."""
        data = self._member_call("promote", f"member promote {member_id}", {"ID": member_id})
        return parse_member_list(data)

    def remove_member(self, member_id: str) -> tuple[EtcdMember, ...]:
        """Remove a member; returns the remaining member list."""
        data = self._member_call("remove", f"member remove {member_id}", {"ID": member_id})
        return parse_member_list(data)

    def unhealthy_voters(self) -> tuple[str, ...]:
        """The voting members (names; ids of unstarted ones) whose /health is not ok now:
        the precondition of anything that takes one voter down (a restart)."""
        voters = [m for m in self.member_list() if not m.is_learner]
        probes = [
            transport.READERS.submit(member_healthy, m.client_urls[0], OBSERVE_TIMEOUT, self.tls)
            if m.client_urls
            else None
            for m in voters
        ]
        return tuple(
            m.name or m.id
            for m, probe in zip(voters, probes, strict=True)
            if probe is None or not probe.result()
        )

    # ------------------------------------------------------------------ keys

    def get(self, key: str) -> str | None:
        values = self._call(f"get {key}", lambda c: c.get(key.encode()))
        return values[0].decode() if values else None

    def put(self, key: str, value: str) -> None:
        self._call(f"put {key}", lambda c: c.put(key.encode(), value.encode()))

    def delete_prefix(self, prefix: str) -> None:
        """Every key under `prefix` (`restore` clears Patroni's state of a cluster)."""
        self._call(f"delete {prefix}*", lambda c: c.delete_prefix(prefix.encode()))

    def delete_key_if_value(
        self,
        key: str,
        value: str,
        guard: LeaseGuard | None = None,
        put: Mapping[str, str] | None = None,
    ) -> bool:
        """Delete `key` only if it currently holds `value`, in one transaction, and write
        the keys of `put` in the same one.

        Used for fencing: delete Patroni's leader key only while it still names the node
        we fenced, never a leader elected since, and (with `guard`) only while the
        operator's own leader key is still the one it created. True if deleted.
        """
        # etcd3gw encodes str as latin-1; pass UTF-8 bytes to keep any name intact.
        k, v = _b64(key.encode()), _b64(value.encode())
        compare = [{"key": k, "result": "EQUAL", "target": "VALUE", "value": v}]
        if guard is not None:
            g = _b64(guard.key.encode())
            compare += [
                {
                    "key": g,
                    "result": "EQUAL",
                    "target": "VALUE",
                    "value": _b64(guard.value.encode()),
                },
                {
                    "key": g,
                    "result": "EQUAL",
                    "target": "CREATE",
                    "create_revision": guard.revision,
                },
            ]
        txn = {
            "compare": compare,
            "success": [
                {"request_delete_range": {"key": k}},
                *(
                    {"request_put": {"key": _b64(pk.encode()), "value": _b64(pv.encode())}}
                    for pk, pv in (put or {}).items()
                ),
            ],
            "failure": [],
        }
        result = self._call(f"delete {key} if value", lambda c: c.transaction(txn))
        # The gateway omits false booleans: a failed compare has no "succeeded" key.
        return bool(result.get("succeeded", False))


def session_for(tls: ClientTls | None) -> requests.Session:
    """A requests session that verifies etcd against the cluster's CA and presents the
    operator's certificate. Not etcd3gw's own: requests lets REQUESTS_CA_BUNDLE (set on many
    hosts) replace a session's CA (psf/requests#3829), so the environment is not read (no
    proxies either: the operator only speaks to its own machines)."""
    session = requests.Session()
    session.trust_env = False
    if tls is not None:
        session.verify = tls.ca
        session.cert = (tls.cert, tls.key)
    return session


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _gw_text(exc: gw_exc.Etcd3Exception) -> str:
    """etcd3gw puts the reason phrase in args and the response body in detail_text."""
    parts = [str(a) for a in exc.args if a] + ([exc.detail_text] if exc.detail_text else [])
    return " ".join(p.strip() for p in parts)


def _short(text: str) -> str:
    # requests' connection errors are paragraphs; the cause is what a human needs.
    for cause in ("Connection refused", "timed out", "No route to host"):
        if cause in text:
            return cause.lower()
    return _tls_cause(text) or text[:300]


def _tls_cause(text: str) -> str | None:
    """A failed handshake, in the words a human acts on (which side refused what)."""
    for marker in ("CERTIFICATE_VERIFY_FAILED", "CERTIFICATE_REQUIRED", "BAD_CERTIFICATE"):
        if marker in text.upper().replace(" ", "_"):
            return f"TLS handshake failed ({marker})"
    if "EOF occurred in violation of protocol" in text:
        # TLS 1.3: etcd closes the connection after the handshake when it refuses the
        # client's certificate (missing, or not signed by the cluster's CA).
        return "TLS handshake failed (the server refused the client certificate)"
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return "TLS handshake failed (the server does not speak TLS)"
    return None


# ---------------------------------------------------------------- observation (never raises)


def _post(url: str, path: str, timeout: float, tls: ClientTls | None) -> Any:
    resp = transport.post(f"{url.rstrip('/')}/v3/{path}", json={}, timeout=timeout, tls=tls)
    resp.raise_for_status()
    return resp.json()


def member_healthy(
    client_url: str, timeout: float = OBSERVE_TIMEOUT, tls: ClientTls | None = None
) -> bool:
    """GET /health of one member: True only when it answers {"health": "true"}."""
    try:
        resp = transport.get(f"{client_url.rstrip('/')}/health", timeout=timeout, tls=tls)
        return parse_health(resp.json())  # 503 still carries {"health": "false"}
    except (requests.RequestException, ValueError):
        return False


def _describe(exc: Exception) -> str:
    # requests' messages are long (pools, retries); keep the reason a human needs.
    if isinstance(exc, requests.ConnectionError) and "refused" in str(exc):
        return "connection refused"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}: {exc.response.text.strip()[:200]}"
    return _tls_cause(str(exc)) or f"{type(exc).__name__}: {exc}"


def collect_etcd(
    client_urls: Sequence[str], timeout: float = OBSERVE_TIMEOUT, tls: ClientTls | None = None
) -> EtcdFacts:
    """Member list through the first endpoint that answers, then /health of every member.

    Never raises: an unreachable cluster is a fact (reachable=False, error says why).
    """
    errors: list[str] = []
    members: tuple[EtcdMember, ...] | None = None
    answered = ""
    for url in client_urls:
        try:
            members = parse_member_list(_post(url, "cluster/member/list", timeout, tls))
            answered = url
            break
        except (requests.RequestException, ValueError, KeyError) as exc:
            errors.append(f"{url}: {_describe(exc)}")
    if members is None:
        detail = "; ".join(errors) or "no client URLs given"
        return EtcdFacts(reachable=False, error=f"no etcd endpoint answered: {detail}")

    probed = [m for m in members if m.name and m.client_urls]
    with nullcontext(transport.READERS) as pool:
        status_f = pool.submit(_post, answered, "maintenance/status", timeout, tls)
        health_f = {
            m.name: pool.submit(member_healthy, m.client_urls[0], timeout, tls) for m in probed
        }
        healthy = frozenset(name for name, f in health_f.items() if f.result())
        try:
            leader_id = parse_status(status_f.result()).leader_id
        except (requests.RequestException, ValueError, KeyError):
            leader_id = None
    return EtcdFacts(reachable=True, members=members, healthy=healthy, leader_id=leader_id)
