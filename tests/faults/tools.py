"""Fault-injection tools: a private redis-server, a misbehaving TCP proxy, a recording load client.

Everything here targets 127.0.0.1 only and is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.database import ADMIN_DSN
from tests.support.isolation import database_name, redis_url
from tests.support.redis_server import RedisServer as RedisServer

SHARED_REDIS = os.environ.get("FAULTS_REDIS_URL") or redis_url(6)
PASSWORD = "fault-password-123"


# --------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """A TCP proxy to PostgreSQL, run on its own thread and event loop (the service under
    test connects through it while the test's own loop is busy or blocked).

    Modes: "pass" forwards (plus `latency` seconds on every upstream->client chunk);
    "refuse" aborts existing connections and resets new ones (the database is cut);
    "stall" holds every byte in both directions until the mode changes (a network
    partition: nothing arrives, nothing fails), then delivers it in order.
    """

    def __init__(self, upstream_port: int = 5432, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.latency = 0.0
        self.mode = "pass"
        self.connections_accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._flowing: asyncio.Event | None = None

    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def _stop() -> None:
            self._abort_all()
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def database_url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database_name(database)}"

    def set_mode(self, mode: str) -> None:
        assert mode in {"pass", "refuse", "stall"}

        def apply() -> None:
            assert self._flowing is not None
            self.mode = mode
            if mode == "refuse":
                self._abort_all()
            if mode == "stall":
                self._flowing.clear()
            else:
                self._flowing.set()

        self._loop.call_soon_threadsafe(apply)
        time.sleep(0.05)  # let the loop apply it before the caller goes on

    def _abort_all(self) -> None:
        for client, upstream in list(self._open):
            client.transport.abort()
            if upstream is not None:
                upstream.transport.abort()
        self._open.clear()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        if self.mode == "refuse":
            client_w.transport.abort()
            return
        entry: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (client_w, None)
        self._open.add(entry)
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._open.discard(entry)
            client_w.transport.abort()
            return
        self._open.discard(entry)
        entry = (client_w, upstream_w)
        self._open.add(entry)
        try:
            await asyncio.gather(
                self._pipe(client_r, upstream_w, delayed=False),
                self._pipe(upstream_r, client_w, delayed=True),
                return_exceptions=True,
            )
        finally:
            self._open.discard(entry)
            client_w.transport.abort()
            upstream_w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        assert self._flowing is not None
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            assert self._flowing is not None
            while True:
                due, data = await queue.get()
                if not data:
                    writer.transport.abort()
                    return
                await self._flowing.wait()
                pause = due - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                due = time.monotonic() + (self.latency if delayed else 0.0)
                await queue.put((due, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()


# --------------------------------------------------------------------------- load client


@dataclass
class Outcome:
    op: str
    phase: str
    started: float
    ended: float
    status: int | None
    error: str | None
    sent: bool
    detail: str = ""
    retry_after: str | None = None
    target: str = ""

    @property
    def duration(self) -> float:
        return self.ended - self.started

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def definite(self) -> bool:
        """The server answered with a status that says no write happened or it did."""
        return self.status is not None and self.status < 500


@dataclass
class VirtualUser:
    email: str
    id: str = ""
    token: str = ""
    # (value, outcome) of every PATCH attempt, in order.
    updates: list[tuple[str, Outcome]] = field(default_factory=list)


class Ledger:
    """What the client saw: every outcome, the sign-ups and updates it believes happened."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.phase = "warm-up"
        self.outcomes: list[Outcome] = []
        self.signups: dict[str, Outcome] = {}
        self.signup_ids: dict[str, str] = {}
        self.users: list[VirtualUser] = []
        self._counter = itertools.count()

    def email(self, kind: str) -> str:
        return f"{self.run}-{kind}-{next(self._counter)}@faults.example.com"

    def in_phase(self, phase: str, op: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.phase == phase and (op is None or o.op == op)]

    def failed(self, outcomes: list[Outcome] | None = None) -> list[Outcome]:
        return [o for o in (self.outcomes if outcomes is None else outcomes) if not o.ok]

    def summary(self, outcomes: list[Outcome] | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes if outcomes is None else outcomes:
            key = str(outcome.status) if outcome.status is not None else str(outcome.error)
            counts[key] = counts.get(key, 0) + 1
        return counts


Targets = Callable[[], list[str]]


class LoadClient:
    """Steady background load: each virtual user signs up, logs in, then loops over
    read, read, update, sign-up-a-new-account, pausing `pause` seconds between requests.

    `targets()` lists the base URLs that may get new requests (a load balancer's view).
    A request is retried on another target only when the connection was refused, i.e.
    before anything was sent; every other failure is recorded as a failure.
    """

    def __init__(
        self,
        ledger: Ledger,
        targets: Targets,
        *,
        users: int = 4,
        pause: float = 0.02,
        timeout: float = 20.0,
        max_requests: int = 6000,
        relogin_on_401: bool = False,
    ) -> None:
        self.ledger = ledger
        self.targets = targets
        self.users = users
        self.pause = pause
        self.timeout = timeout
        self.max_requests = max_requests
        self.relogin_on_401 = relogin_on_401
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._round_robin = itertools.count()
        self.client = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=0),
            headers={"Connection": "close"},
        )

    async def request(
        self, op: str, method: str, path: str, *, retry_refused: bool = True, **kwargs: Any
    ) -> tuple[Outcome, httpx.Response | None]:
        started = time.monotonic()
        phase = self.ledger.phase
        attempts = 0
        while True:
            targets = self.targets()
            if not targets and self._stop.is_set():
                # Stopping, and nowhere to send it: this request was never made.
                return Outcome(op, phase, started, time.monotonic(), None, "NotSent", False), None
            if not targets:
                await asyncio.sleep(0.05)
                if time.monotonic() - started > self.timeout:
                    outcome = Outcome(op, phase, started, time.monotonic(), None, "NoTarget", False)
                    self.ledger.outcomes.append(outcome)
                    return outcome, None
                continue
            base = targets[next(self._round_robin) % len(targets)]
            attempts += 1
            try:
                response = await self.client.request(method, base + path, **kwargs)
            except httpx.ConnectError as error:
                # Nothing was sent: a load balancer may safely try elsewhere.
                if retry_refused and attempts < 50 and time.monotonic() - started < self.timeout:
                    await asyncio.sleep(0.02)
                    continue
                outcome = Outcome(
                    op,
                    phase,
                    started,
                    time.monotonic(),
                    None,
                    type(error).__name__,
                    False,
                    target=base,
                )
                self.ledger.outcomes.append(outcome)
                return outcome, None
            except httpx.HTTPError as error:
                outcome = Outcome(
                    op,
                    phase,
                    started,
                    time.monotonic(),
                    None,
                    type(error).__name__,
                    True,
                    detail=str(error)[:200],
                    target=base,
                )
                self.ledger.outcomes.append(outcome)
                return outcome, None
            detail = ""
            if response.status_code >= 400:
                with contextlib.suppress(ValueError):
                    detail = str(response.json().get("detail", ""))
            outcome = Outcome(
                op,
                phase,
                started,
                time.monotonic(),
                response.status_code,
                None,
                True,
                detail=detail,
                retry_after=response.headers.get("retry-after"),
                target=base,
            )
            self.ledger.outcomes.append(outcome)
            return outcome, response

    async def sign_up(self, email: str) -> tuple[Outcome, httpx.Response | None]:
        outcome, response = await self.request(
            "signup",
            "POST",
            "/api/v1/users",
            json={"email": email, "password": PASSWORD, "full_name": "initial"},
        )
        self.ledger.signups[email] = outcome
        if outcome.status == 201 and response is not None:
            self.ledger.signup_ids[email] = response.json()["id"]
        return outcome, response

    async def login(self, user: VirtualUser) -> bool:
        outcome, response = await self.request(
            "login",
            "POST",
            "/api/v1/auth/token",
            data={"username": user.email, "password": PASSWORD},
        )
        if outcome.status == 200 and response is not None:
            user.token = response.json()["access_token"]
            return True
        return False

    async def prepare(self) -> None:
        """Create and log in the virtual users (before any fault)."""
        for _ in range(self.users):
            user = VirtualUser(self.ledger.email("vu"))
            outcome, response = await self.sign_up(user.email)
            assert outcome.status == 201 and response is not None, self.ledger.summary()
            user.id = response.json()["id"]
            assert await self.login(user), self.ledger.summary()
            self.ledger.users.append(user)

    def _auth(self, user: VirtualUser) -> dict[str, str]:
        return {"Authorization": f"Bearer {user.token}"}

    async def _run_user(self, user: VirtualUser, offset: int) -> None:
        step = offset
        while not self._stop.is_set() and len(self.ledger.outcomes) < self.max_requests:
            kind = step % 4
            step += 1
            if kind in (0, 1):
                outcome, _ = await self.request(
                    "read", "GET", f"/api/v1/users/{user.id}", headers=self._auth(user)
                )
            elif kind == 2:
                value = f"name-{uuid.uuid4().hex[:12]}"
                outcome, _ = await self.request(
                    "update",
                    "PATCH",
                    f"/api/v1/users/{user.id}",
                    json={"full_name": value},
                    headers=self._auth(user),
                )
                user.updates.append((value, outcome))
            else:
                outcome, _ = await self.sign_up(self.ledger.email("new"))
            if self.relogin_on_401 and outcome.status == 401:
                await self.login(user)
            await asyncio.sleep(self.pause)

    def start(self) -> None:
        for index, user in enumerate(self.ledger.users):
            self._tasks.append(asyncio.create_task(self._run_user(user, index)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def aclose(self) -> None:
        await self.stop()
        await self.client.aclose()


async def wait_for(
    condition: Callable[[], Awaitable[bool]],
    timeout: float,  # noqa: ASYNC109 - a polling helper's bound, not a cancellable call
    interval: float = 0.1,
) -> float:
    """Seconds until `condition()` held; raises TimeoutError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if await condition():
                return time.monotonic() - started
        await asyncio.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


class ReadinessRouter:
    """A load balancer's view of a set of instances: an instance gets new requests only
    while its /readyz answered 200 at the last probe (every `period` seconds)."""

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.instances: list[str] = []
        self.ready: dict[str, bool] = {}
        # When a probe of each instance found it unready, every time one did.
        self.unready_seen: dict[str, list[float]] = {}
        self._client = httpx.AsyncClient(timeout=1.0)
        self._task: asyncio.Task[None] | None = None

    def add(self, base_url: str) -> None:
        self.instances.append(base_url)
        self.ready[base_url] = False

    def targets(self) -> list[str]:
        return [base for base in self.instances if self.ready.get(base)]

    async def _probe(self) -> None:
        while True:
            for base in list(self.instances):
                try:
                    response = await self._client.get(f"{base}/readyz")
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if not ok:
                    self.unready_seen.setdefault(base, []).append(time.monotonic())
                self.ready[base] = ok
            await asyncio.sleep(self.period)

    def first_unready_after(self, base: str, moment: float) -> float | None:
        """When a probe first found `base` unready at or after `moment` (None: none did)."""
        return next((t for t in self.unready_seen.get(base, []) if t >= moment), None)

    async def __aenter__(self) -> ReadinessRouter:
        self._task = asyncio.create_task(self._probe())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()


# --------------------------------------------------------------------------- checks


async def fetch_metrics(
    client: httpx.AsyncClient, metrics_url: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape of the service's metrics port (RunningService.metrics_url)."""
    response = await client.get(metrics_url, timeout=5)
    response.raise_for_status()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def metrics_when(
    client: httpx.AsyncClient,
    metrics_url: str,
    condition: Callable[[dict[tuple[str, tuple[tuple[str, str], ...]], float]], bool],
    timeout: float = 15,  # noqa: ASYNC109 - a polling helper's bound, not a cancellable call
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrapes until one satisfies `condition`, or `timeout` passes; the last scrape either
    way, for the caller's assertion to show. A worker writes its samples for scrapes by
    other workers once a second, so what another worker just counted shows up a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await fetch_metrics(client, metrics_url)
        if condition(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.2)


def failure_lines(logs: str, limit: int = 3000) -> str:
    """The service's log lines that explain a failed request: its error lines and the access
    lines of 5xx answers, or, with none, its last lines. A failure that happened mid-run is
    otherwise far from the tail an assertion message can hold."""
    telling = [
        line
        for line in logs.splitlines()
        if '"level":"error"' in line or re.search(r'"status":5\d\d\b', line)
    ]
    return "\n".join(telling)[-limit:] if telling else logs[-limit:]


def metric(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and set(labels.items()) <= set(sample_labels)
    )


def database_dsn(database: str) -> str:
    return f"{ADMIN_DSN.rsplit('/', 1)[0]}/{database_name(database)}"


async def check_rows(database: str, ledger: Ledger, dsn: str | None = None) -> int:
    """The rows in PostgreSQL match what the client recorded: every acknowledged sign-up
    exists once with its id, every row was at least attempted (an unacknowledged attempt
    may or may not have committed), and each user's full_name is its last acknowledged
    update or a later unacknowledged one. Returns the number of rows checked. `dsn` names
    another server than the local one."""
    connection = await asyncpg.connect(dsn or database_dsn(database))
    try:
        rows = await connection.fetch(
            "SELECT id::text AS id, email, full_name FROM users WHERE email LIKE $1",
            f"{ledger.run}-%",
        )
    finally:
        await connection.close()
    by_email: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        by_email.setdefault(row["email"], []).append(row)
    problems: list[str] = []
    duplicates = [email for email, found in by_email.items() if len(found) > 1]
    if duplicates:
        problems.append(f"duplicated rows: {duplicates[:5]}")
    for email, outcome in ledger.signups.items():
        found = by_email.get(email)
        if outcome.status == 201:
            if not found:
                problems.append(f"acknowledged sign-up lost: {email}")
            elif found[0]["id"] != ledger.signup_ids[email]:
                problems.append(f"sign-up {email} stored under another id")
        elif outcome.definite and found:
            problems.append(f"sign-up {email} answered {outcome.status} but a row exists")
    unknown = set(by_email) - set(ledger.signups)
    if unknown:
        problems.append(f"rows nobody signed up: {sorted(unknown)[:5]}")
    for user in ledger.users:
        found = by_email.get(user.email)
        if not found:
            continue
        acceptable = {"initial"}
        for value, outcome in user.updates:
            if outcome.ok:
                acceptable = {value}
            elif not outcome.definite:
                acceptable.add(value)
        if found[0]["full_name"] not in acceptable:
            problems.append(
                f"{user.email}: full_name {found[0]['full_name']!r}, expected one of {acceptable}"
            )
    assert not problems, problems
    return len(rows)


def worker_pids(master_pid: int) -> set[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    try:
        return {int(pid) for pid in children.read_text().split()}
    except FileNotFoundError:
        return set()
