"""The service log of a run with sign-ups, logins, refreshes and failures holds no secret."""

from __future__ import annotations

import json
import uuid

import jwt

from tests.security.conftest import JWT_KEY, PASSWORD, Api


def test_no_passwords_tokens_or_keys_in_the_log(api: Api) -> None:
    password = f"Pw-{uuid.uuid4().hex}"
    wrong = f"Wrong-{uuid.uuid4().hex}"
    email = f"logs-{uuid.uuid4().hex[:8]}@security.example.com"
    client = api.client
    assert (
        client.post("/api/v1/users", json={"email": email, "password": password}).status_code == 201
    )
    assert (
        client.post("/api/v1/auth/token", data={"username": email, "password": wrong}).status_code
        == 401
    )
    tokens = client.post(
        "/api/v1/auth/token", data={"username": email, "password": password}
    ).json()
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    assert client.get("/api/v1/users/me", headers=bearer).status_code == 200
    # A token in the query string, a refused body carrying a password, a broken token.
    client.get(f"/api/v1/users/me?access_token={access}", headers=bearer)
    client.post("/api/v1/users", json={"email": "not-an-email", "password": password})
    client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {access}x"})
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).json()
    # Reusing the old refresh token is the loud path (family revoked).
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": rotated["refresh_token"]},
        headers={"Authorization": f"Bearer {rotated['access_token']}"},
    )
    user_id = client.get("/api/v1/users/me", headers=bearer).json().get("id", "")
    new_password = f"New-{uuid.uuid4().hex}"
    client.patch(f"/api/v1/users/{user_id}", json={"password": new_password}, headers=bearer)

    # A request that fails inside the database driver (a NUL byte PostgreSQL cannot
    # store): its error, however it is answered, must not log the statement's parameters.
    client.post(
        "/api/v1/users",
        content=(
            b'{"email": "nul-' + uuid.uuid4().hex[:8].encode() + b'@security.example.com", '
            b'"password": "' + password.encode() + b'", "full_name": "a\\u0000b"}'
        ),
        headers={"Content-Type": "application/json", "X-Request-ID": "logs-last-request"},
    )

    # One keep-alive connection, so one worker wrote every line, in order: once the last
    # request's line is there, all of them are.
    log = api.service.logs_with("logs-last-request")
    secrets = {
        "password": password,
        "wrong password": wrong,
        "new password": new_password,
        "access token": access,
        "access token signature": access.rsplit(".", 1)[1],
        "refresh token": refresh,
        "rotated access token": rotated["access_token"],
        "rotated refresh token": rotated["refresh_token"],
        "JWT key": JWT_KEY,
        "password hash": "$argon2id$",
    }
    leaked = {
        name: [line[:300] for line in log.splitlines() if value in line][:2]
        for name, value in secrets.items()
        if value in log
    }
    assert not leaked, leaked
    # One JSON object per line, and the request lines carry a request id.
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines
    bad = [line[:200] for line in lines if not line.startswith("{")]
    assert not bad, bad
    requests = [json.loads(line) for line in lines if '"event":"request"' in line.replace(" ", "")]
    assert requests and all(entry.get("request_id") for entry in requests)


def test_an_incoming_trace_is_joined_with_trace_export_off(api: Api) -> None:
    """This service exports no spans (OTEL_SDK_DISABLED), yet its access log and X-Trace-Id
    carry the caller's trace id, so its logs join the fleet's traces."""
    trace_id = uuid.uuid4().hex
    request_id = f"joined-{uuid.uuid4().hex[:8]}"
    response = api.client.get(
        "/api/v1/users/me",
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "X-Request-ID": request_id},
    )
    assert response.status_code == 401
    assert response.headers["x-trace-id"] == trace_id
    log = api.service.logs_with(request_id)
    lines = [json.loads(line) for line in log.splitlines() if request_id in line]
    assert lines, "no log line of the request"
    assert {line.get("trace_id") for line in lines} == {trace_id}
    # Malformed or all-zero trace contexts are ignored, never echoed.
    for bad in ("00-zzzz-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01"):
        ignored = api.client.get("/api/v1/users/me", headers={"traceparent": bad})
        assert "x-trace-id" not in ignored.headers


def test_refresh_reuse_is_a_security_event_naming_the_session_not_the_token(api: Api) -> None:
    client = api.client
    email = f"reuse-{uuid.uuid4().hex[:8]}@security.example.com"
    assert (
        client.post("/api/v1/users", json={"email": email, "password": PASSWORD}).status_code == 201
    )
    tokens = client.post(
        "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
    ).json()
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    request_id = f"reuse-{uuid.uuid4().hex[:8]}"
    replay = client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": tokens["refresh_token"]},
        headers={"X-Request-ID": request_id},
    )
    assert replay.status_code == 401  # no grace window in these services
    sid = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})["sid"]
    # The worker writes the event before the request's access line.
    log = api.service.logs_with(request_id)
    events = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and "refresh_token_reuse" in line
    ]
    mine = [event for event in events if event["session_id"] == sid]
    assert len(mine) == 1, events
    assert mine[0]["security_event"] is True and mine[0]["level"] == "warning"
    for token in (tokens["refresh_token"], rotated.json()["refresh_token"]):
        assert token not in log
