"""Drives a mix of realistic requests at the running service: reads, writes, logins,
refreshes, and the usual client errors (401, 403/404, 422, 429), from several threads so the
pool, the cache and the rate limiter all move."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

PASSWORD = "dashboards-proof-pass-1"
# A service client allowed to introspect (the live proof lists it in INTROSPECTION_CLIENTS).
INTROSPECTION_CLIENT = ("dashboards", "dashboards-proof-client-secret")


@dataclass
class User:
    id: str
    email: str
    access: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


class Traffic:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()

    def _record(self, response: httpx.Response) -> httpx.Response:
        with self._lock:
            self.statuses[response.status_code] += 1
        return response

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10)

    def sign_up_and_login(self, client: httpx.Client, email: str) -> User:
        created = self._record(
            client.post("/api/v1/users", json={"email": email, "password": PASSWORD})
        )
        assert created.status_code == 201, created.text
        tokens = self._record(
            client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
        )
        assert tokens.status_code == 200, tokens.text
        body = tokens.json()
        return User(created.json()["id"], email, body["access_token"], body["refresh_token"])

    def _iteration(self, client: httpx.Client, user: User, i: int) -> None:
        self._record(client.get("/api/v1/users/me", headers=user.headers))
        self._record(client.get(f"/api/v1/users/{user.id}", headers=user.headers))
        if i % 5 == 0:
            patch = {"full_name": f"Proof User {i}"}
            self._record(client.patch(f"/api/v1/users/{user.id}", json=patch, headers=user.headers))
        if i % 7 == 0:  # someone else's (non-existent) user: 403 or 404
            self._record(client.get(f"/api/v1/users/{uuid.uuid4()}", headers=user.headers))
        if i % 11 == 0:  # a forged token: 401
            self._record(client.get("/api/v1/users/me", headers={"Authorization": "Bearer x.y.z"}))
        if i % 13 == 0:  # invalid signup: 422
            self._record(client.post("/api/v1/users", json={"email": "not-an-email"}))
        if i % 17 == 0:  # token rotation
            response = self._record(
                client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh})
            )
            if response.status_code == 200:
                user.access = response.json()["access_token"]
                user.refresh = response.json()["refresh_token"]
        if i % 19 == 0:  # unknown path: counted under handler "none"
            self._record(client.get("/api/v1/no-such-route"))

    def user_loop(self, user: User, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self.client() as client:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                self._iteration(client, user, i)
                # ~2 iterations a second (~5 requests) keeps each user under RATE_LIMIT_API.
                time.sleep(0.4)

    def login_failures_and_limits(self, client: httpx.Client, email: str, attempts: int) -> None:
        """Wrong passwords until the per-client login limit answers 429."""
        for _ in range(attempts):
            form = {"username": email, "password": "wrong-password-123"}
            self._record(client.post("/api/v1/auth/token", data=form))

    def api_burst(self, client: httpx.Client, user: User, requests: int) -> None:
        """More requests than the per-user API limit allows in one window."""
        for _ in range(requests):
            self._record(client.get("/api/v1/users/me", headers=user.headers))

    def run(self, users: int, seconds: float, login_attempts: int, api_burst: int) -> None:
        with self.client() as client:
            stamp = uuid.uuid4().hex[:8]
            accounts = [
                self.sign_up_and_login(client, f"dash-{stamp}-{n}@example.com")
                for n in range(users)
            ]
            noisy = self.sign_up_and_login(client, f"dash-{stamp}-noisy@example.com")
            with ThreadPoolExecutor(max_workers=users) as pool:
                loops = [pool.submit(self.user_loop, user, seconds) for user in accounts]
                # Errors and limits early, so steady traffic follows them in every window.
                self.login_failures_and_limits(client, accounts[0].email, login_attempts)
                self.api_burst(client, noisy, api_burst)
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    # Readiness as the kubelet would probe it: keeps dependency_up current.
                    self._record(client.get("/readyz"))
                    # Another service: fetches the JWKS and introspects a token.
                    self._record(client.get("/.well-known/jwks.json"))
                    form = {"token": accounts[0].access}
                    self._record(
                        client.post("/api/v1/auth/introspect", data=form, auth=INTROSPECTION_CLIENT)
                    )
                    time.sleep(1)
                for loop in loops:
                    loop.result()
            self._record(client.post("/api/v1/auth/logout", headers=noisy.headers))
