"""Every error leaves as RFC 9457 problem+json, and a 500 says nothing about the internals."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.support.app_harness import AppHarness

PROBLEM = "application/problem+json"


async def test_unhandled_error_is_a_bare_500_problem(make_harness: Callable[..., Any]) -> None:
    harness: AppHarness = await make_harness()

    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    harness.app.add_api_route("/boom", boom)
    response = await harness.client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"].endswith("/internal-error")
    assert body["request_id"] == "req-500" == response.headers["x-request-id"]
    assert "hunter2" not in response.text and "RuntimeError" not in response.text


async def test_unknown_route_and_method_are_problems(harness: AppHarness) -> None:
    missing = await harness.client.get("/nowhere")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    wrong_method = await harness.client.put("/api/v1/users")
    assert wrong_method.status_code == 405 and wrong_method.headers["content-type"] == PROBLEM


async def test_oversize_body_is_413_before_parsing(harness: AppHarness) -> None:
    big = b'{"email": "a@b.io", "password": "' + b"x" * 70_000 + b'"}'
    response = await harness.client.post(
        "/api/v1/users", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM

    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 8192

    chunked = await harness.client.post(
        "/api/v1/users", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413


async def test_a_bad_request_id_is_replaced(harness: AppHarness) -> None:
    response = await harness.client.get("/livez", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32


def _db_errors(kind: str) -> float:
    return REGISTRY.get_sample_value("user_service_db_errors_total", {"kind": kind}) or 0.0


@pytest.mark.parametrize(
    "error",
    [PermissionError(13, "Permission denied", "/etc/secret"), FileNotFoundError(2, "gone")],
    ids=["permission", "missing-file"],
)
async def test_an_os_error_that_is_no_connection_error_is_a_500_not_a_database_outage(
    make_harness: Callable[..., Any], error: OSError
) -> None:
    harness: AppHarness = await make_harness(clean=False)

    async def local_failure() -> None:
        raise error

    harness.app.add_api_route("/local-failure", local_failure)
    before = _db_errors("unavailable")
    response = await harness.client.get("/local-failure")
    assert response.status_code == 500, response.text
    assert response.json()["type"].endswith("/internal-error")
    assert "database" not in response.text
    assert _db_errors("unavailable") == before


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_refused_database_connection_is_a_database_outage(
    make_harness: Callable[..., Any], host: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        closed_port = taken.getsockname()[1]
    dead: AppHarness = await make_harness(
        clean=False,
        DATABASE_URL=f"postgresql+asyncpg://postgres@{host}:{closed_port}/nothing",
        DB_CONNECT_TIMEOUT=2,
    )
    before = _db_errors("unavailable")
    response = await dead.client.post(
        "/api/v1/users", json={"email": "refused@example.com", "password": "password-123"}
    )
    assert response.status_code == 503, response.text
    assert "unreachable" in response.json()["detail"]
    assert response.headers["retry-after"]
    assert _db_errors("unavailable") == before + 1
