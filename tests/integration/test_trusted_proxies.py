"""Behind an ingress: gunicorn trusts X-Forwarded-For only from FORWARDED_ALLOW_IPS (read
through Settings, one source), and login rate limits key on the real client address."""

from __future__ import annotations

import importlib.util
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from app.settings import Settings
from tests.support.database import fresh_database
from tests.support.isolation import redis_url
from tests.support.rate_windows import room_wait
from tests.support.refusals import refusal
from tests.support.service import REPO, RunningService, running_service

LOGIN_BUDGET = 3


def _service_env(forwarded_allow_ips: str) -> dict[str, str]:
    return {
        "DATABASE_URL": fresh_database("user_service_proxy_test"),
        "REDIS_URL": redis_url(3),
        "CACHE_KEY_PREFIX": f"px{uuid.uuid4().hex[:8]}",
        "RATE_LIMIT_LOGIN": f"{LOGIN_BUDGET}/minute",
        "FORWARDED_ALLOW_IPS": forwarded_allow_ips,
        "DB_POOL_SIZE": "2",
        "DB_MAX_OVERFLOW": "1",
    }


@pytest.fixture(scope="module")
def behind_trusted_proxy() -> Iterator[RunningService]:
    # The test client connects from 127.0.0.1, which this range trusts: it plays the ingress.
    with running_service(_service_env("10.96.0.0/12,127.0.0.0/8"), workers=2) as service:
        yield service


@pytest.fixture(scope="module")
def untrusted_peer() -> Iterator[RunningService]:
    # Only a range the test client is not in: its X-Forwarded-For must be ignored.
    with running_service(_service_env("10.96.0.0/12"), workers=2) as service:
        yield service


def _login(service: RunningService, client_ip: str) -> httpx.Response:
    return httpx.post(
        f"{service.base_url}/api/v1/auth/token",
        data={"username": f"nobody-{uuid.uuid4().hex[:6]}@example.com", "password": "x" * 12},
        headers={"X-Forwarded-For": client_ip},
        timeout=10,
    )


def _spend(service: RunningService, client_ip: str) -> list[int]:
    # The limit is a fixed window of a minute: every counted login must fall in one.
    time.sleep(room_wait(60, 10))
    return [_login(service, client_ip).status_code for _ in range(LOGIN_BUDGET + 1)]


def test_trusted_proxy_each_client_has_its_own_budget(
    behind_trusted_proxy: RunningService,
) -> None:
    first = _spend(behind_trusted_proxy, "203.0.113.10")
    assert first[:LOGIN_BUDGET].count(429) == 0 and first[-1] == 429, first
    # Another client behind the same ingress is not throttled by the first one's failures.
    assert _login(behind_trusted_proxy, "203.0.113.11").status_code != 429
    # The proxy's own hop is skipped: the right-most untrusted address is the client.
    assert _login(behind_trusted_proxy, "198.51.100.7, 10.96.0.10").status_code != 429


def test_untrusted_peer_cannot_pick_its_address(untrusted_peer: RunningService) -> None:
    # A client that forges X-Forwarded-For still spends the budget of its real address.
    time.sleep(room_wait(60, 10))  # the limit is a fixed window of a minute
    statuses = [
        _login(untrusted_peer, f"203.0.113.{n}").status_code for n in range(LOGIN_BUDGET + 1)
    ]
    assert statuses[:LOGIN_BUDGET].count(429) == 0 and statuses[-1] == 429, statuses


def _load_gunicorn_conf(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(
        "gunicorn_conf_under_test", REPO / "gunicorn.conf.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gunicorn_reads_trusted_proxies_from_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    conf = _load_gunicorn_conf(
        {"APP_ENV": "test", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}, monkeypatch
    )
    assert conf.forwarded_allow_ips == ",".join(Settings().forwarded_allow_ips) == "127.0.0.1"
    conf = _load_gunicorn_conf({"FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.0.2.1"}, monkeypatch)
    assert conf.forwarded_allow_ips == "10.0.0.0/8,192.0.2.1"


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "not-an-address", "10.0.0.0/33"])
def test_bad_trusted_proxies_are_refused_by_name(bad: str) -> None:
    env = {"APP_ENV": "test", "FORWARDED_ALLOW_IPS": bad}
    assert "FORWARDED_ALLOW_IPS" in refusal("app", "check-config", env=env)
