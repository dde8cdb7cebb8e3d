"""drill/timeline.py: a failover's steps from the fencer's journal and the drill's logs."""

from __future__ import annotations

from pgha_operator.drill.lbwatch import LbSample
from pgha_operator.drill.timeline import fence_of, lb_up_at, medians, timeline

FENCE = {"seen": 100.01, "decided": 100.02, "fenced": 100.03, "released": 100.05, "seenBy": "event"}


def test_the_fence_of_the_run_is_the_one_seen_during_the_fault() -> None:
    earlier = {**FENCE, "seen": 90.0}
    assert fence_of([earlier, FENCE], started=100.0, healed=102.0) == FENCE
    assert fence_of([earlier], started=100.0, healed=102.0) is None
    assert fence_of([{"seen": "garbage"}], started=100.0, healed=102.0) is None


def test_haproxy_sees_the_new_primary_at_its_first_up_sample_after_the_fault() -> None:
    samples = [
        LbSample(99.9, frozenset({"node1"})),
        LbSample(100.1, frozenset()),
        LbSample(100.3, frozenset({"node2"})),
    ]
    assert lb_up_at(samples, "node2", 100.0) == 100.3
    assert lb_up_at(samples, "node1", 100.0) is None  # the old primary is not "seen"
    assert lb_up_at(samples, None, 100.0) is None


def test_a_run_timeline_is_relative_to_the_fault() -> None:
    t = timeline(100.0, FENCE, promoted=100.2, haproxy_up=100.3, first_write=100.35)
    assert t == {
        "deathSeen": 0.01,
        "decided": 0.02,
        "fenced": 0.03,
        "keyReleased": 0.05,
        "promoted": 0.2,
        "haproxyUp": 0.3,
        "firstWrite": 0.35,
        "seenBy": "event",
    }
    lease = timeline(100.0, None, promoted=120.0, haproxy_up=None, first_write=None)
    assert lease["deathSeen"] is None and lease["promoted"] == 20.0 and lease["seenBy"] is None


def test_medians_of_moments_and_of_steps() -> None:
    runs = [
        timeline(
            0.0, {"seen": 0.0, "decided": 0.05, "fenced": 0.1, "released": 0.2}, 0.3, 0.4, 0.5
        ),
        timeline(0.0, {"seen": 0.0, "decided": 0.1, "fenced": 0.3, "released": 0.4}, 0.5, 0.9, 1.0),
        timeline(0.0, None, 20.0, 20.1, 20.2),  # the lease decided: no fence steps
    ]
    m = medians(runs)
    assert m["runs"] == 3
    assert m["moments"]["fenced"] == {"median": 0.2, "min": 0.1, "max": 0.3}
    assert m["moments"]["firstWrite"]["median"] == 1.0
    assert m["steps"]["deathSeen->decided"]["median"] == 0.075
    assert m["steps"]["decided->fenced"]["median"] == 0.125
    assert m["steps"]["promoted->haproxyUp"] == {"median": 0.1, "min": 0.1, "max": 0.4}
    assert medians([])["moments"]["deathSeen"] is None
