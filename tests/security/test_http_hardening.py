"""Oversize bodies, security headers, CORS and TrustedHost, against the real service."""

from __future__ import annotations

import json
import socket
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from tests.security.conftest import ALLOWED_ORIGIN, Api

LIMIT = 65536  # MAX_BODY_BYTES default


def _raw(
    api: Api, head: bytes, body_parts: list[bytes], read_timeout: float = 5
) -> tuple[bytes, float]:
    """Send a request by hand; returns (what the server answered, seconds until it did)."""
    url = urlsplit(api.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=read_timeout) as sock:
        started = time.monotonic()
        sock.sendall(head)
        answer = b""
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:
                break  # the server already answered and closed
        sock.settimeout(read_timeout)
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
        return answer, time.monotonic() - started


def _head(api: Api, path: str, extra: str) -> bytes:
    host = urlsplit(api.base_url).netloc
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_declared_oversize_body_is_refused_before_it_is_sent(api: Api) -> None:
    """Content-Length of 50 MB and only 1 KiB actually sent: the 413 comes at once, so
    the service neither waited for nor read the body."""
    answer, seconds = _raw(
        api, _head(api, "/api/v1/users", "Content-Length: 50000000\r\n"), [b"{" + b" " * 1023]
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer
    assert seconds < 2, seconds


def test_chunked_oversize_body_is_refused_before_it_ends(api: Api) -> None:
    """A chunked body with no length: refused once it passes the limit, although the
    client never sent the final chunk."""
    chunk = b"x" * 16384
    encoded = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    answer, seconds = _raw(
        api,
        _head(api, "/api/v1/users", "Transfer-Encoding: chunked\r\n"),
        [encoded] * 6,  # 96 KiB, no terminating 0-chunk
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert seconds < 2, seconds


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/api/v1/users", "json"),
        ("/api/v1/auth/token", "form"),
        ("/api/v1/auth/refresh", "json"),
    ],
)
def test_oversize_bodies_get_413_problem_on_every_endpoint(api: Api, path: str, kind: str) -> None:
    if kind == "form":
        response = api.client.post(path, data={"username": "a@b.c", "password": "x" * (LIMIT + 1)})
    else:
        response = api.client.post(
            path,
            content=b'{"refresh_token": "' + b"x" * (LIMIT + 1) + b'"}',
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413, response.text
    assert response.json()["status"] == 413
    # Just under the limit is parsed and judged on its content instead.
    under = api.client.post(
        "/api/v1/users",
        content=b'{"email": "a@b.example", "password": "' + b"p" * (LIMIT - 100) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert under.status_code == 422, under.text


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


def test_security_headers_on_successes_and_errors(api: Api) -> None:
    user, headers = api.user_with_token()
    responses = {
        "200": api.client.get("/api/v1/users/me", headers=headers),
        "201": api.client.post(
            "/api/v1/users",
            json={"email": f"h-{uuid.uuid4().hex[:8]}@security.example.com", "password": "p" * 10},
        ),
        "401": api.client.get("/api/v1/users/me"),
        "404 route": api.client.get("/api/v1/nothing-here"),
        "404 user": api.client.get(f"/api/v1/users/{uuid.uuid4()}", headers=headers),
        "422": api.client.post("/api/v1/users", json={"email": "nope"}),
        "405": api.client.put("/api/v1/users/me", headers=headers),
        "413": api.client.post("/api/v1/users", content=b"x" * (LIMIT + 1)),
        "livez": api.client.get("/livez"),
    }
    for name, response in responses.items():
        missing = {
            header: response.headers.get(header)
            for header, value in SECURITY_HEADERS.items()
            if response.headers.get(header) != value
        }
        assert not missing, (name, response.status_code, missing)
        assert response.headers.get("x-request-id"), name
    # The docs page loads scripts, so it has no CSP of ours, but keeps the other headers.
    docs = api.client.get("/docs")
    assert docs.headers["x-frame-options"] == "DENY"
    assert "access-control-allow-origin" not in responses["200"].headers
    del user


def test_cors_answers_only_the_listed_origin(api: Api) -> None:
    _, headers = api.user_with_token()
    for origin in (
        "https://evil.example.com",
        "null",
        ALLOWED_ORIGIN + ".evil.com",
        "http://app.example.com",
    ):
        preflight = api.client.options(
            "/api/v1/users/me",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 400, (origin, preflight.status_code)
        assert "access-control-allow-origin" not in preflight.headers, origin
        simple = api.client.get("/api/v1/users/me", headers={**headers, "Origin": origin})
        assert "access-control-allow-origin" not in simple.headers, origin
    allowed = api.client.options(
        "/api/v1/users/me",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    simple = api.client.get("/api/v1/users/me", headers={**headers, "Origin": ALLOWED_ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert simple.headers.get("access-control-allow-credentials") is None


def test_trusted_host_rejects_unknown_hosts(api: Api) -> None:
    for host in ("evil.example.com", "127.0.0.1.evil.com", "localhost.evil.com"):
        response = api.client.get("/api/v1/users/me", headers={"Host": host})
        assert response.status_code == 400, (host, response.status_code)
        assert response.headers["content-type"] == "application/problem+json", host
        assert "access-control-allow-origin" not in response.headers
    for host in ("localhost", "LOCALHOST", urlsplit(api.base_url).netloc):
        response = api.client.post("/api/v1/users", json={}, headers={"Host": host})
        assert response.status_code == 422, (host, response.status_code)


def test_probes_and_scrapes_answer_whatever_the_host(api: Api) -> None:
    """kubelet probes and Prometheus scrapes address the pod by IP (Host: 10.x.y.z:8000):
    with TRUSTED_HOSTS set to the public name they must still get through, or the pod is
    never ready and gets restarted in a loop."""
    pod_host = "10.244.1.17:8000"
    for path in ("/livez", "/readyz"):
        response = api.client.get(path, headers={"Host": pod_host})
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
    # Scrapes go to the metrics port, which has no host check; the public port has no /metrics.
    scrape = httpx.get(api.service.metrics_url, headers={"Host": "10.244.1.17:9464"})
    assert scrape.status_code == 200 and "user_service_build_info" in scrape.text
    assert api.client.get("/metrics", headers={"Host": pod_host}).status_code == 400


def test_server_header_does_not_name_the_stack(api: Api) -> None:
    """Informational: report what the Server header says (uvicorn adds one by default)."""
    response = api.client.get("/livez")
    server = response.headers.get("server", "")
    assert "gunicorn" not in server.lower(), server
    assert all(char not in server for char in "0123456789"), server


def _parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/v1/users/me HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: a\x01b\r\n\r\n",
        b"GET /api/v1/users/me HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: x\r\n\r\n",
        b"GET /api/v1/\x7fusers HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"NOT-HTTP\r\n\r\n",
    ],
    ids=["control-char-in-value", "space-in-name", "control-char-in-target", "garbage"],
)
def test_requests_the_http_server_refuses_get_a_problem_with_security_headers(
    api: Api, request_bytes: bytes
) -> None:
    url = urlsplit(api.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status, headers, body = _parse(answer)
    assert status == 400, answer
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["status"] == 400 and problem["type"].endswith("/bad-request")
    assert problem["request_id"] == headers["x-request-id"]
    assert int(headers["content-length"]) == len(body)
