"""Locust journeys for user-service: weighted user behaviour over seeded accounts.

Run through `python -m loadtests.gate` (which seeds first), or by hand with
LOADTEST_SEED_FILE pointing at the JSON `python -m loadtests.seed` wrote.

Logins are kept rare on purpose: every simulated user starts with a token pair the seeder
obtained and reuses it, so Argon2 and the per-IP login rate limit stay a small share of the
traffic, as with real clients. Route names are path templates (Locust adds the method), so
ids never split the stats.

Environment: LOADTEST_SEED_FILE (required), LOADTEST_WAIT_MIN / LOADTEST_WAIT_MAX (think
time in seconds, default 0.1 / 0.5), LOADTEST_HOT_SHARE (share of reads that go to the hot
set, default 0.8).
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from itertools import cycle
from typing import Any
from urllib.parse import quote

import gevent
from locust import FastHttpUser, between, events, task
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

API = "/api/v1"
USER_BY_ID = f"{API}/users/{{id}}"
ME = f"{API}/users/me"
USERS = f"{API}/users"
TOKEN = f"{API}/auth/token"
REFRESH = f"{API}/auth/refresh"
LOGOUT = f"{API}/auth/logout"
MAX_BACKOFF_SECONDS = 10.0


class Seed:
    """The seeded accounts, loaded once per Locust process."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.password: str = data["password"]
        self.users: list[dict[str, Any]] = data["users"]
        self.all_ids: list[str] = [u["id"] for u in self.users]
        self.hot_ids: list[str] = data.get("hot_ids") or self.all_ids[:10]
        self.admin: dict[str, Any] | None = data.get("admin")
        # Hand each simulated user its own account; wrap round when users outnumber them.
        self._accounts: Iterator[dict[str, Any]] = cycle(self.users)

    def next_account(self) -> dict[str, Any]:
        return dict(next(self._accounts))


_seed: Seed | None = None
_sent = 0  # requests this process sent (a worker's share of the run)
SEED_MESSAGE = "loadtest-seed"


def seed() -> Seed:
    global _seed
    if _seed is None:
        path = os.environ.get("LOADTEST_SEED_FILE")
        if not path:
            raise RuntimeError("LOADTEST_SEED_FILE is not set: run `python -m loadtests.seed`")
        with open(path, encoding="utf-8") as handle:
            _seed = Seed(json.load(handle))
    return _seed


@events.init.add_listener  # type: ignore[untyped-decorator]
def _distribute_seed(environment: Environment, **_: Any) -> None:
    """In distributed mode the master reads the seed file and hands it to every worker, so
    worker pods need no copy of it (each worker gets it before its first spawn order)."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):

        def receive(message: Any, **__: Any) -> None:
            global _seed
            _seed = Seed(message.data)

        runner.register_message(SEED_MESSAGE, receive)
    elif isinstance(runner, MasterRunner):

        def send(**__: Any) -> None:
            path = os.environ.get("LOADTEST_SEED_FILE")
            if path:
                with open(path, encoding="utf-8") as handle:
                    runner.send_message(SEED_MESSAGE, json.load(handle))

        environment.events.test_start.add_listener(send)


@events.request.add_listener  # type: ignore[untyped-decorator]
def _count(**_: Any) -> None:
    global _sent
    _sent += 1


def _final_stats(environment: Environment) -> None:
    # Locust's own CSV is rewritten once a second and can miss the last requests; this one
    # is written after every user has stopped, so the gate judges the whole run (in
    # distributed mode: the master's stats, aggregated from every worker).
    path = os.environ.get("LOADTEST_FINAL_STATS")
    if path:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            StatsCSV(environment, PERCENTILES_TO_REPORT).requests_csv(csv.writer(handle))


def _settled_total(environment: Environment, quiet_seconds: float, limit_seconds: float) -> None:
    """Wait until the master's request total has not moved for `quiet_seconds`."""
    stats = environment.runner.stats  # type: ignore[union-attr]
    deadline = time.monotonic() + limit_seconds
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        total = stats.total.num_requests
        if total != last:
            last, since = total, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return
        gevent.sleep(0.25)


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _schedule_distributed_stop(environment: Environment, **_: Any) -> None:
    """Distributed runs end here rather than on --run-time: Locust's headless quit fires
    test_stop before the workers' last reports arrive (and waits half a second for them),
    so the master's totals would miss the tail. Stopping first lets every worker stop its
    users; their next report (every 3 s) carries the rest, then the totals settle."""
    seconds = os.environ.get("LOADTEST_RUN_TIME")
    runner = environment.runner
    if not seconds or not isinstance(runner, MasterRunner):
        return

    def stop_then_quit() -> None:
        gevent.sleep(float(seconds))
        runner.stop()
        gevent.sleep(3.5)
        _settled_total(environment, quiet_seconds=4.0, limit_seconds=60.0)
        _final_stats(environment)
        runner.quit()

    gevent.spawn(stop_then_quit)


@events.test_stop.add_listener  # type: ignore[untyped-decorator]
def _write_final_stats(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        # A worker's own stats are shipped to the master and reset: it keeps only a count.
        counts = os.environ.get("LOADTEST_WORKER_COUNTS_DIR")
        if counts:
            with open(os.path.join(counts, f"{os.getpid()}.json"), "w", encoding="utf-8") as f:
                json.dump({"requests": _sent}, f)
        return
    if isinstance(environment.runner, MasterRunner) and os.environ.get("LOADTEST_RUN_TIME"):
        return  # written once the workers' last reports are in (_schedule_distributed_stop)
    _final_stats(environment)


def _wait() -> Any:
    return between(
        float(os.environ.get("LOADTEST_WAIT_MIN", "0.1")),
        float(os.environ.get("LOADTEST_WAIT_MAX", "0.5")),
    )


def _hot_share() -> float:
    return float(os.environ.get("LOADTEST_HOT_SHARE", "0.8"))


def _title(resp: ResponseContextManager) -> str:
    """The problem+json title and detail, so the failures table says what gave up."""
    try:
        body = resp.json()
        return f"{body.get('title', '')}: {body.get('detail', '')}"[:160]
    except (ValueError, AttributeError):
        return ""


class _AccountUser(FastHttpUser):
    """Shared mechanics: hold a token pair, log in again only when it is lost."""

    abstract = True
    think_time = _wait()

    def on_start(self) -> None:
        self.account = seed().next_account()
        self.access: str | None = self.account.get("access_token")
        self.refresh_token: str | None = self.account.get("refresh_token")
        if not self.access:
            self.login()

    backoff = 0.0

    def wait_time(self) -> float:
        # A pending login back-off replaces the think time once (and stays killable).
        if self.backoff:
            delay, self.backoff = self.backoff, 0.0
            return delay
        return float(self.think_time())

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}

    def login(self) -> None:
        password = self.account.get("password") or seed().password
        form = {"username": self.account["email"], "password": password}
        with self.client.post(TOKEN, data=form, name=TOKEN, catch_response=True) as resp:
            if resp.status_code == 200:
                body = resp.json()
                self.access, self.refresh_token = body["access_token"], body["refresh_token"]
            elif resp.status_code == 429:
                # The per-IP login limit doing its job (a real deployment keeps it low):
                # counted under its own name, not as a failure, and the old token is kept.
                resp.request_meta["name"] = f"{TOKEN} (rate limited)"
                resp.success()
                retry_after = resp.headers.get("Retry-After", "1")
                # Back off as a real client would, instead of hammering the limiter.
                self.backoff = min(float(retry_after), MAX_BACKOFF_SECONDS)
            else:
                resp.failure(f"login {resp.status_code}")

    def expect(self, resp: ResponseContextManager, *ok: int) -> None:
        # Locust's response context manager is untyped.
        if resp.status_code in ok:
            resp.success()  # type: ignore[no-untyped-call]
        elif resp.status_code == 401:
            # The token was revoked (logout, refresh reuse): a real client logs in again.
            resp.failure("401: token rejected")  # type: ignore[no-untyped-call]
            self.access = None
        else:
            resp.failure(f"unexpected {resp.status_code}: {_title(resp)}")  # type: ignore[no-untyped-call]

    def pick_user_id(self) -> str:
        ids = seed()
        pool = ids.hot_ids if random.random() < _hot_share() else ids.all_ids
        return random.choice(pool)

    def read_other(self) -> None:
        if not self.access:
            return self.login()
        user_id = self.pick_user_id()
        with self.client.get(
            f"{USERS}/{user_id}",
            headers=self.auth(),
            name=USER_BY_ID,
            catch_response=True,
        ) as resp:
            self.expect(resp, 200)
        return None


class MemberUser(_AccountUser):
    """An ordinary account holder: mostly reads, a few writes and token chores."""

    weight = 20

    @task(50)
    def read_other_user(self) -> None:
        self.read_other()

    @task(20)
    def read_own_profile(self) -> None:
        if not self.access:
            return self.login()
        with self.client.get(ME, headers=self.auth(), name=ME, catch_response=True) as r:
            self.expect(r, 200)
        return None

    @task(4)
    def update_profile(self) -> None:
        # Writes invalidate the cached user, so the hit ratio reflects a real mix.
        if not self.access:
            return self.login()
        body = {"full_name": f"Load Test {random.randint(0, 1_000_000)}"}
        with self.client.patch(
            f"{USERS}/{self.account['id']}",
            json=body,
            headers=self.auth(),
            name=USER_BY_ID,
            catch_response=True,
        ) as resp:
            self.expect(resp, 200)
        return None

    @task(3)
    def refresh(self) -> None:
        if not self.refresh_token:
            return self.login()
        with self.client.post(
            REFRESH,
            json={"refresh_token": self.refresh_token},
            name=REFRESH,
            catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                body = resp.json()
                self.access, self.refresh_token = body["access_token"], body["refresh_token"]
            self.expect(resp, 200)
        return None

    @task(1)
    def logout_and_back(self) -> None:
        if not self.access:
            return self.login()
        with self.client.post(
            LOGOUT,
            json={"refresh_token": self.refresh_token},
            headers=self.auth(),
            name=LOGOUT,
            catch_response=True,
        ) as resp:
            self.expect(resp, 204)
        self.access = self.refresh_token = None
        self.login()
        return None

    @task(1)
    def sign_up(self) -> None:
        # Each sign-up hashes a password: kept at the weight of a login.
        body = {
            "email": f"signup-{uuid.uuid4().hex}@example.com",
            "password": seed().password,
            "full_name": "Load Test Signup",
        }
        with self.client.post(USERS, json=body, name=USERS, catch_response=True) as r:
            self.expect(r, 201)


class AdminUser(_AccountUser):
    """An operator paging through the user list (keyset pagination, two pages).

    Exactly one per run, whatever the user count: operators are few, and a weight would
    leave small runs without any.
    """

    fixed_count = 1

    def on_start(self) -> None:
        admin = seed().admin
        if not admin:
            # No admin credentials were seeded: this class has nothing to do.
            self.account = {}
            self.access = None
            self.refresh_token = None
            return
        self.account = dict(admin)
        self.access = admin.get("access_token")
        self.refresh_token = admin.get("refresh_token")
        if not self.access:
            self.login()

    @task(3)
    def list_users(self) -> None:
        if not self.account:
            return None
        if not self.access:
            return self.login()
        cursor: str | None = None
        for _ in range(2):
            params = f"?limit=50&cursor={quote(cursor)}" if cursor else "?limit=50"
            with self.client.get(
                f"{USERS}{params}",
                headers=self.auth(),
                name=USERS,
                catch_response=True,
            ) as resp:
                self.expect(resp, 200)
                cursor = resp.json().get("next_cursor") if resp.status_code == 200 else None
            if not cursor:
                break
        return None

    @task(1)
    def read_other_user(self) -> None:
        if self.account:
            self.read_other()
