"""Lifecycle rules on their own: states from times, and what a rotation may change."""

from __future__ import annotations

from app.services.key_lifecycle import KeyState, KeyTimes, Policy, plan_rotation, signer

POLICY = Policy(publish_delay_seconds=310, overlap_seconds=1000)


def _key(kid: str, published: float, activated: float | None = None, **more: float) -> KeyTimes:
    return KeyTimes(kid, published, activated, more.get("retired"), more.get("deleted"))


def test_states_follow_the_times() -> None:
    key = _key("a", 0, 100, retired=200, deleted=300)
    assert [key.state(t).value for t in (50, 100, 199, 200, 299, 300)] == [
        "next", "active", "active", "retired", "retired", "deleted",
    ]  # fmt: skip
    assert key.is_published(299) and not key.is_published(300)


def test_an_empty_ring_bootstraps_an_active_key() -> None:
    plan = plan_rotation([], now=0, policy=POLICY)
    assert plan.bootstrap and plan.publish_next and plan.activate is None


def test_a_next_key_is_not_activated_before_it_has_been_published_long_enough() -> None:
    keys = [_key("old", 0, 0), _key("new", 1000)]
    early = plan_rotation(keys, now=1000 + 309, policy=POLICY)
    assert early.activate is None and early.retire == () and not early.publish_next
    assert early.waiting_for is not None and early.waiting_for.kid == "new"
    ready = plan_rotation(keys, now=1000 + 310, policy=POLICY)
    assert ready.activate == "new" and ready.retire == ("old",) and ready.publish_next


def test_with_no_next_key_a_rotation_publishes_one_and_activates_nothing() -> None:
    plan = plan_rotation([_key("only", 0, 0)], now=5000, policy=POLICY)
    assert plan.publish_next and plan.activate is None and plan.retire == ()


def test_the_latest_activated_key_signs() -> None:
    keys = [_key("a", 0, 10), _key("b", 0, 20), _key("c", 0, 30, retired=40)]
    current = signer(keys, now=35)
    assert current is not None and current.kid == "c"
    current = signer(keys, now=45)
    assert current is not None and current.kid == "b"
    assert signer([_key("n", 0)], now=45) is None
    assert _key("n", 0).state(10**9) is KeyState.NEXT
