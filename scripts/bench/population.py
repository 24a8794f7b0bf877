"""The benchmark's users and tokens: thousands of accounts, each logged in once through the
real API, and the request lists (hot/cold mix) the load generators replay."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import orjson
from argon2 import PasswordHasher

from app.settings import Settings
from scripts.bench.stack import plain_dsn

PASSWORD = "benchmark password"
# The bulk accounts log in once, to get their tokens: a cheap hash keeps that seeding quick.
# The login row uses accounts hashed at the configured cost (see LOGIN_ARGON2).
SEED_ARGON2 = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64", "ARGON2_PARALLELISM": "1"}


def configured_argon2() -> dict[str, int]:
    """The Argon2id cost a deployment runs unless it overrides it (the settings' defaults)."""
    fields = Settings.model_fields
    return {
        "time_cost": int(fields["argon2_time_cost"].default),
        "memory_cost": int(fields["argon2_memory_kib"].default),
        "parallelism": int(fields["argon2_parallelism"].default),
    }


@dataclass(frozen=True)
class Mix:
    """Who reads whom: `hot_share` of the requests go to the first `hot_fraction` of users."""

    users: int
    hot_fraction: float
    hot_share: float

    def describe(self) -> str:
        return (
            f"{self.users} users, one token each; {self.hot_share:.0%} of requests from and to "
            f"the hottest {self.hot_fraction:.0%} of users, the rest spread over all of them"
        )

    def pick(self, rng: random.Random) -> int:
        hot = max(1, int(self.users * self.hot_fraction))
        if rng.random() < self.hot_share:
            return rng.randrange(hot)
        return rng.randrange(self.users)


@dataclass
class Population:
    users: list[uuid.UUID]
    tokens: list[str]
    login_emails: list[str]


async def _insert(dsn: str, rows: list[tuple[object, ...]]) -> None:
    connection = await asyncpg.connect(plain_dsn(dsn))
    try:
        await connection.copy_records_to_table(
            "users",
            records=rows,
            columns=[
                *("id", "email", "full_name", "password_hash", "is_active", "is_admin"),
                *("created_at", "updated_at"),
            ],
        )
    finally:
        await connection.close()


def insert_users(
    database_url: str, users: int, login_users: int
) -> tuple[list[uuid.UUID], list[str]]:
    """Bulk-insert the accounts straight into the table (one hash computed per cost, shared
    by every account of that kind) and return the bulk ids and the login emails."""
    now = datetime.now(UTC)
    seed = SEED_ARGON2
    cheap = PasswordHasher(
        time_cost=int(seed["ARGON2_TIME_COST"]),
        memory_cost=int(seed["ARGON2_MEMORY_KIB"]),
        parallelism=int(seed["ARGON2_PARALLELISM"]),
    ).hash(PASSWORD)
    full = PasswordHasher(**configured_argon2()).hash(PASSWORD)
    ids = [uuid.uuid4() for _ in range(users)]
    rows: list[tuple[object, ...]] = [
        (user_id, f"bench{n}@example.com", f"Bench User {n}", cheap, True, False, now, now)
        for n, user_id in enumerate(ids)
    ]
    emails = [f"login{n}@example.com" for n in range(login_users)]
    rows += [(uuid.uuid4(), email, None, full, True, False, now, now) for email in emails]
    asyncio.run(_insert(database_url, rows))
    return ids, emails


async def _login_all(base_url: str, count: int, concurrency: int) -> list[str]:
    tokens: list[str] = [""] * count
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            response = await client.post(
                "/api/v1/auth/token",
                data={"username": f"bench{n}@example.com", "password": PASSWORD},
            )
            response.raise_for_status()
            tokens[n] = response.json()["access_token"]

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return tokens


def log_in(base_url: str, count: int) -> list[str]:
    """One login per bulk account through the API: real tokens with real sessions."""
    return asyncio.run(_login_all(base_url, count, concurrency=16))


async def _read_all(base_url: str, population: Population, concurrency: int) -> list[bytes]:
    bodies: list[bytes] = [b""] * len(population.users)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(len(population.users)):
        queue.put_nowait(n)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            response = await client.get(
                f"/api/v1/users/{population.users[n]}",
                headers={"Authorization": f"Bearer {population.tokens[n]}"},
            )
            response.raise_for_status()
            bodies[n] = response.content

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return bodies


def read_every_user(base_url: str, population: Population) -> list[bytes]:
    """Read each user once through the service: fills its cache, returns the bodies."""
    return asyncio.run(_read_all(base_url, population, concurrency=16))


@dataclass(frozen=True)
class Target:
    method: str
    path: str
    token: str | None = None
    body: bytes = b""
    content_type: str | None = None


def reads(population: Population, mix: Mix, count: int, seed: int = 1) -> list[Target]:
    rng = random.Random(seed)
    return [
        Target(
            "GET",
            f"/api/v1/users/{population.users[mix.pick(rng)]}",
            population.tokens[mix.pick(rng)],
        )
        for _ in range(count)
    ]


def patches(population: Population, mix: Mix, count: int, seed: int = 2) -> list[Target]:
    """Each caller renames itself (a caller may change only its own account)."""
    rng = random.Random(seed)
    targets = []
    for n in range(count):
        who = mix.pick(rng)
        body = orjson.dumps({"full_name": f"Renamed {n}"})
        path = f"/api/v1/users/{population.users[who]}"
        targets.append(Target("PATCH", path, population.tokens[who], body, "application/json"))
    return targets


def logins(population: Population, count: int, seed: int = 3) -> list[Target]:
    rng = random.Random(seed)
    form = "application/x-www-form-urlencoded"
    return [
        Target(
            "POST",
            "/api/v1/auth/token",
            None,
            f"username={rng.choice(population.login_emails)}&password=benchmark+password".encode(),
            form,
        )
        for _ in range(count)
    ]


def bare(population: Population, mix: Mix, route: str, count: int, seed: int = 1) -> list[Target]:
    """The same users, in the same mix, on a bare baseline endpoint (no token)."""
    rng = random.Random(seed)
    targets = []
    for _ in range(count):
        user = population.users[mix.pick(rng)]
        mix.pick(rng)  # the caller the service would see: keeps the same sequence of users
        targets.append(Target("GET", f"/{route}/{user}"))
    return targets


def write_targets(targets: list[Target], path: Path) -> Path:
    """One request per line for the wrk script: method, path, token, content type, body
    (tab-separated, body hex-encoded)."""
    with path.open("w") as out:
        for target in targets:
            out.write(
                "\t".join(
                    (
                        target.method,
                        target.path,
                        target.token or "",
                        target.content_type or "",
                        target.body.hex(),
                    )
                )
                + "\n"
            )
    return path
