"""Issue 16 defect 7: a login flood cannot grow the throttle's memory or the audit log without bound."""

from __future__ import annotations

from bridge.web.auth import LoginLimiter

from .conftest import login


def test_checking_a_new_name_stores_nothing_and_failures_are_capped():
    limiter = LoginLimiter(per_user=3, per_address=5, window_seconds=60, max_keys=200)
    for n in range(1000):
        assert not limiter.blocked([("user", f"never-seen-{n}"), ("address", f"10.0.{n // 250}.{n % 250}")], now=1)
    assert limiter.key_count == 0
    for n in range(5000):  # a botnet: every attempt a new name from a new address
        limiter.failed([("user", f"guess-{n}"), ("address", f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")], now=n / 100)
    assert limiter.key_count <= 200
    limiter.failed([("user", "late")], now=1000)  # everything earlier has left the window
    assert limiter.key_count == 1


def test_the_newest_guessing_run_is_still_blocked_after_a_flood():
    limiter = LoginLimiter(per_user=3, per_address=100, window_seconds=60, max_keys=50)
    for n in range(500):
        limiter.failed([("user", f"noise-{n}")], now=10)
    for _ in range(3):
        limiter.failed([("user", "target")], now=11)
    assert limiter.blocked([("user", "target")], now=12)


def test_a_blocked_address_is_audited_once_per_window_not_once_per_attempt(site):
    client = site.app.test_client()
    for n in range(5):
        assert login(client, f"nobody-{n}", "guessing-1234", address="10.9.9.9").status_code == 401
    for n in range(40):
        assert login(client, f"nobody-{n}", "guessing-1234", address="10.9.9.9").status_code == 429
    blocked = site.store.search_audit(action="login.blocked")
    assert len(blocked) == 1 and blocked[0].detail["address"] == "10.9.9.9"
    assert len(site.store.search_audit(action="login.failure")) == 5
