"""Tokens: login, refresh rotation and reuse, logout, forged tokens, limits."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import orjson
from sqlalchemy import event

from app.settings import DEVELOPMENT_JWT_KEY
from tests.support.app_harness import PASSWORD, AppHarness
from tests.support.rate_windows import room_wait


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_issues_a_bearer_pair(harness: AppHarness) -> None:
    await harness.sign_up("login@example.com")
    before = int(time.time())
    tokens = await harness.login("LOGIN@example.com")
    after = int(time.time())
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert {"sub", "exp", "iat", "jti"} <= claims.keys()
    assert tokens["token_type"] == "bearer" and claims["exp"] - claims["iat"] == 900
    # The whole seconds left of the token's 900 as the answer was made: 900, or 899 when a
    # second began between the session's issue time and that moment.
    assert claims["exp"] - after <= tokens["expires_in"] <= claims["exp"] - before


async def test_a_login_sends_postgresql_two_statements(harness: AppHarness) -> None:
    """The account (its user and its throttle row, read together), then the new session: two
    statements, each its own transaction, with no BEGIN, COMMIT or ROLLBACK around them. Every
    round trip a login makes is work on the event loop that cached reads wait behind. (Behind
    PgBouncer with a statement timeout, each statement keeps a transaction for its SET LOCAL.)"""
    await harness.sign_up("frugal@example.com")
    engine = harness.app.state.resources.engine.sync_engine
    login = asyncio.current_task()
    statements: list[str] = []
    # The driver's own log: it sees the transaction control SQLAlchemy's events do not.
    control: list[str] = []
    watched: list[Any] = []

    def log_query(record: Any) -> None:
        query = record.query.strip().rstrip(";").upper()
        if query.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            control.append(query)

    def checkout(dbapi_connection: Any, *_args: object) -> None:
        # Only this task's: background work may use the pool meanwhile.
        if asyncio.current_task() is login:
            driver = dbapi_connection.driver_connection
            driver.add_query_logger(log_query)
            watched.append(driver)

    def before_execute(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statement = " ".join(statement.split()).upper()
        # A transaction's SET LOCAL (behind PgBouncer) belongs with its BEGIN, not the login.
        if asyncio.current_task() is login and not statement.startswith("SET LOCAL "):
            statements.append(statement)

    event.listen(engine.pool, "checkout", checkout)
    event.listen(engine, "before_cursor_execute", before_execute)
    try:
        await harness.login("frugal@example.com")
    finally:
        event.remove(engine.pool, "checkout", checkout)
        event.remove(engine, "before_cursor_execute", before_execute)
        for driver in watched:
            driver.remove_query_logger(log_query)
    settings = harness.app.state.settings
    if settings.db_pgbouncer_transaction_mode and settings.db_statement_timeout_ms:
        assert control == ["BEGIN", "ROLLBACK", "BEGIN", "COMMIT"]
    else:
        assert control == []
    assert len(statements) == 2, statements
    assert statements[0].startswith("SELECT USERS.ID, USERS.PASSWORD_HASH"), statements
    assert statements[1].startswith("WITH ACCOUNT AS"), statements
    assert " INSERT INTO SESSIONS " in statements[1], statements


async def test_wrong_password_and_unknown_email_look_the_same(harness: AppHarness) -> None:
    await harness.sign_up("known@example.com")
    wrong = await harness.client.post(
        "/api/v1/auth/token", data={"username": "known@example.com", "password": "nope-nope"}
    )
    unknown = await harness.client.post(
        "/api/v1/auth/token", data={"username": "ghost@example.com", "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_refresh_rotates_and_reuse_revokes_the_family(
    make_harness: Callable[..., Any],
) -> None:
    # No grace window: the replay below is a reuse however soon it comes.
    harness: AppHarness = await make_harness(REFRESH_REUSE_GRACE_SECONDS=0)
    await harness.sign_up("rotate@example.com")
    first = await harness.login("rotate@example.com")
    second = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    me = await harness.client.get("/api/v1/users/me", headers=_bearer(rotated["access_token"]))
    assert me.status_code == 200
    replay = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]
    # The whole family is gone: the newest refresh token and its access token too.
    newest = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert newest.status_code == 401
    me = await harness.client.get("/api/v1/users/me", headers=_bearer(rotated["access_token"]))
    assert me.status_code == 401


async def test_logout_revokes_the_access_token_and_its_refresh_family(harness: AppHarness) -> None:
    await harness.sign_up("bye@example.com")
    tokens = await harness.login("bye@example.com")
    response = await harness.client.post(
        "/api/v1/auth/logout", headers=_bearer(tokens["access_token"])
    )
    assert response.status_code == 204
    me = await harness.client.get("/api/v1/users/me", headers=_bearer(tokens["access_token"]))
    assert me.status_code == 401 and "revoked" in me.json()["detail"]
    refresh = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refresh.status_code == 401


def _forge(claims: dict[str, Any], key: str = DEVELOPMENT_JWT_KEY, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def test_forged_expired_and_unsigned_tokens_are_rejected(harness: AppHarness) -> None:
    await harness.sign_up("target@example.com")
    tokens = await harness.login("target@example.com")
    real = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    now = int(time.time())
    variants: dict[str, str] = {
        "alg none": _unsigned({**real, "adm": True}),
        "wrong key": _forge(real, key="another-key-another-key-another-key!!"),
        "expired": _forge({**real, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "not yet valid": _forge({**real, "nbf": now + 3600}),
        "wrong audience": _forge({**real, "aud": "someone-else"}),
        "wrong issuer": _forge({**real, "iss": "someone-else"}),
        "refresh as access": tokens["refresh_token"],
        "tampered": tokens["access_token"][:-4]
        + ("AAAA" if not tokens["access_token"].endswith("AAAA") else "BBBB"),
        "garbage": "not.a.jwt",
    }
    for name, token in variants.items():
        response = await harness.client.get("/api/v1/users/me", headers=_bearer(token))
        assert response.status_code == 401, name
        assert response.headers["content-type"] == "application/problem+json", name


async def test_login_is_rate_limited_per_client(make_harness: Callable[..., Any]) -> None:
    harness: AppHarness = await make_harness(RATE_LIMIT_LOGIN="3/minute")
    await harness.sign_up("brute@example.com")
    await asyncio.sleep(room_wait(60, 5))  # the limits are fixed windows of a minute
    codes = []
    for _ in range(5):
        response = await harness.client.post(
            "/api/v1/auth/token", data={"username": "brute@example.com", "password": "guess-123"}
        )
        codes.append(response.status_code)
    assert codes == [401, 401, 401, 429, 429]
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-limit"] == "3"
    assert response.headers["ratelimit-remaining"] == "0"
    assert response.json()["status"] == 429


async def test_api_is_rate_limited_per_user(make_harness: Callable[..., Any]) -> None:
    harness: AppHarness = await make_harness(RATE_LIMIT_API="2/minute")
    _, headers = await harness.user_with_token("chatty@example.com")
    await asyncio.sleep(room_wait(60, 5))
    codes = [
        (await harness.client.get("/api/v1/users/me", headers=headers)).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    _, other_headers = await harness.user_with_token("quiet@example.com")
    assert (await harness.client.get("/api/v1/users/me", headers=other_headers)).status_code == 200


async def test_password_change_revokes_every_other_session(harness: AppHarness) -> None:
    me, headers = await harness.user_with_token("changer@example.com")
    other = await harness.login("changer@example.com")
    # No pause: revocation goes by session, not by whole-second issue times.
    response = await harness.client.patch(
        f"/api/v1/users/{me['id']}", json={"password": "a brand new password"}, headers=headers
    )
    assert response.status_code == 200
    # The session that changed the password goes on; the other one is gone, refresh included.
    assert (await harness.client.get("/api/v1/users/me", headers=headers)).status_code == 200
    stale = await harness.client.get("/api/v1/users/me", headers=_bearer(other["access_token"]))
    assert stale.status_code == 401
    refresh = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}
    )
    assert refresh.status_code == 401
    fresh = await harness.login("changer@example.com", "a brand new password")
    ok = await harness.client.get("/api/v1/users/me", headers=_bearer(fresh["access_token"]))
    assert ok.status_code == 200
    old_password = await harness.client.post(
        "/api/v1/auth/token", data={"username": "changer@example.com", "password": PASSWORD}
    )
    assert old_password.status_code == 401


async def test_login_normalises_the_email_as_sign_up_does(harness: AppHarness) -> None:
    """Typed exactly as at sign-up, in any Unicode form or case, the address logs in."""
    decomposed = "Ade\u0301le@Example.COM"  # "e" + combining acute: sign-up stores it composed
    await harness.sign_up(decomposed)
    for typed in (decomposed, "ad\u00e9le@example.com", " ADE\u0301LE@EXAMPLE.COM "):
        response = await harness.client.post(
            "/api/v1/auth/token", data={"username": typed, "password": PASSWORD}
        )
        assert response.status_code == 200, (typed, response.text)


def _budget(response: Any) -> tuple[int, int]:
    return int(response.headers["ratelimit-limit"]), int(response.headers["ratelimit-remaining"])


async def test_every_answer_of_a_limited_route_shows_the_budget(
    make_harness: Callable[..., Any],
) -> None:
    """Failures count against the budget, so they must show it shrink too."""
    harness: AppHarness = await make_harness(RATE_LIMIT_LOGIN="5/minute", RATE_LIMIT_API="5/minute")
    await harness.sign_up("counted@example.com")
    await asyncio.sleep(room_wait(60, 5))
    login = "/api/v1/auth/token"
    failed = await harness.client.post(
        login, data={"username": "counted@example.com", "password": "wrong-pass"}
    )
    assert failed.status_code == 401 and _budget(failed) == (5, 4)
    invalid = await harness.client.post(login, data={"username": "counted@example.com"})
    assert invalid.status_code == 422 and _budget(invalid) == (5, 3)
    ok = await harness.client.post(
        login, data={"username": "counted@example.com", "password": PASSWORD}
    )
    assert ok.status_code == 200 and _budget(ok) == (5, 2)
    headers = _bearer(ok.json()["access_token"])
    missing = await harness.client.get(f"/api/v1/users/{uuid.uuid4()}", headers=headers)
    assert missing.status_code == 404 and _budget(missing) == (5, 4)
    forbidden = await harness.client.get("/api/v1/users", headers=headers)
    assert forbidden.status_code == 403 and _budget(forbidden) == (5, 3)
    for response in (failed, invalid, missing, forbidden):
        assert int(response.headers["ratelimit-reset"]) >= 1
        assert "retry-after" not in response.headers
