"""core/tls.py: when a certificate must be issued again (pure, no files)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgha_operator.core.tls import CertInfo, CertWanted, days_left, reissue_reason

NOW = datetime(2030, 1, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
WANT = CertWanted(frozenset({"node1"}), frozenset({"127.0.10.11", "127.0.0.1"}), "ca-1")


def have(
    days: float = 60,
    dns: frozenset[str] = WANT.dns_names,
    ips: frozenset[str] = WANT.ip_addresses,
    issuer: str = "ca-1",
) -> CertInfo:
    return CertInfo(NOW + timedelta(days=days), dns, ips, issuer)


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (None, "missing"),
        (have(issuer="ca-2"), "signed by another CA"),
        (have(issuer=""), "signed by another CA"),  # cert_info's mark: no CA of ours signed it
        (have(days=3), "expires in 3.0 days"),
        (have(days=7), "expires in 7.0 days"),  # the boundary itself is due
        (have(days=0), "expired"),
        (have(days=-5), "expired"),
        (have(ips=frozenset({"127.0.10.11"})), "names changed"),  # a load balancer was added
        (have(dns=frozenset({"node9"})), "names changed"),
    ],
)
def test_reasons(info: CertInfo | None, reason: str) -> None:
    assert reissue_reason(info, WANT, NOW, WEEK) == reason


def test_a_good_certificate_is_kept() -> None:
    assert reissue_reason(have(days=7.01), WANT, NOW, WEEK) is None
    # more names than wanted (a load balancer removed) is no reason to reissue
    extra = have(ips=WANT.ip_addresses | {"127.0.3.2"})
    assert reissue_reason(extra, WANT, NOW, WEEK) is None


def test_the_ca_is_checked_before_the_end() -> None:
    """An expired certificate of another CA names the CA: that is what must change."""
    assert reissue_reason(have(days=-1, issuer="x"), WANT, NOW, WEEK) == "signed by another CA"


def test_days_left() -> None:
    assert days_left(NOW + timedelta(days=2, hours=12), NOW) == 2.5
    assert days_left(NOW - timedelta(days=1), NOW) == -1
