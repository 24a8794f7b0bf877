"""While draining after SIGTERM, every response closes its connection.

A client's keep-alive connection left open through the drain is closed by the server when it
stops, and a request the client sends at that moment meets a reset (a node drain through
kube-proxy showed exactly this). Closing after each response during the drain makes the
client's next request open a new connection, which the load balancer sends to a pod that is
still serving.
"""

from __future__ import annotations

import signal
import time

import httpx

from tests.support.database import fresh_database
from tests.support.isolation import redis_url
from tests.support.service import running_service

# Long enough that a loaded machine still answers inside the drain.
DRAIN_SECONDS = 20


def _draining(base_url: str) -> bool:
    # A new connection each time: the kept-alive one below must stay untouched until asked.
    response = httpx.get(f"{base_url}/readyz", timeout=10)
    return response.status_code == 503 and response.json().get("status") == "draining"


def test_responses_close_the_connection_while_draining() -> None:
    env = {
        "DATABASE_URL": fresh_database("user_service_drain_close"),
        "REDIS_URL": redis_url(10),
        "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
    }
    with (
        running_service(env, workers=1) as service,
        httpx.Client(base_url=service.base_url, timeout=10) as client,
    ):
        before = client.get("/livez")
        assert before.status_code == 200
        assert before.headers.get("connection", "keep-alive").lower() != "close"

        service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_SECONDS
        while not _draining(service.base_url):
            assert time.monotonic() < deadline, "the worker never started draining"
            time.sleep(0.2)

        during = client.get("/livez")
        assert during.status_code == 200
        assert during.headers.get("connection", "").lower() == "close", dict(during.headers)

        # Proven; the rest of the drain would only be waited out: gunicorn's quick shutdown.
        service.process.send_signal(signal.SIGQUIT)
        service.process.wait(timeout=DRAIN_SECONDS)
