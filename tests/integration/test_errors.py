"""Every error leaves as RFC 9457 problem+json, and a 500 says nothing about the internals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.conftest import AppHarness

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
