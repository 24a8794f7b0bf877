"""The app running its lifespan, and an httpx client talking to it over ASGI: for tests and
for the programs tests run in a process of their own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from app.main import create_app
from app.settings import Settings

PASSWORD = "correct horse battery"


class AppHarness:
    """An app running its lifespan, and an httpx client talking to it over ASGI."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def sign_up(self, email: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/users", json={"email": email, "password": password, **extra}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/auth/token", data={"username": email, "password": password}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def user_with_token(self, email: str) -> tuple[dict[str, Any], dict[str, str]]:
        user = await self.sign_up(email)
        tokens = await self.login(email)
        return user, {"Authorization": f"Bearer {tokens['access_token']}"}

    async def make_admin(self, email: str) -> None:
        async with self.app.state.resources.engine.begin() as connection:
            await connection.execute(
                text("UPDATE users SET is_admin = true WHERE email = :e"), {"e": email}
            )


async def start_harness(
    settings: Settings, **app_kwargs: Any
) -> tuple[AppHarness, Callable[[], Any]]:
    app = create_app(settings, **app_kwargs)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    async def stop() -> None:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)

    return AppHarness(app, client), stop
