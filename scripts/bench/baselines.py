"""Bare FastAPI endpoints the service is measured against (see scripts/bench.sh).

`GET /asyncpg/{id}` reads one row with raw asyncpg, `GET /redis/{id}` does one Redis GET,
`GET /orm/{id}` loads the row through the SQLAlchemy ORM the usual way (a session per
request, `session.get`, the model serialized by a response model). No auth, no middleware.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI, Response
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.models import User
from app.schemas.user import UserRead

DSN = os.environ["DATABASE_URL"]
POOL = int(os.environ.get("DB_POOL_SIZE", "5"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pg = await asyncpg.create_pool(
        DSN.replace("postgresql+asyncpg://", "postgresql://"), min_size=POOL, max_size=POOL
    )
    # The service's kind of pool: when a stall piles up more requests than it has connections,
    # they wait for one. The default pool refused them, and the reference answered HTTP 500
    # where the service it is compared with answered every request.
    pool = aioredis.BlockingConnectionPool.from_url(os.environ["REDIS_URL"], max_connections=64)
    app.state.redis = aioredis.Redis.from_pool(pool)
    app.state.engine = create_async_engine(DSN, pool_size=POOL, max_overflow=0)
    app.state.sessions = async_sessionmaker(app.state.engine, expire_on_commit=False)
    yield
    await app.state.pg.close()
    await app.state.redis.aclose()
    await app.state.engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/ready")
async def ready() -> Response:
    return Response(b"ok")


@app.get("/asyncpg/{user_id}")
async def raw_row(user_id: uuid.UUID) -> Response:
    row = await app.state.pg.fetchrow(
        "SELECT id, email, full_name, is_active, is_admin, created_at, updated_at "
        "FROM users WHERE id = $1",
        user_id,
    )
    body = UserRead.model_validate(dict(row)).model_dump_json()
    return Response(body, media_type="application/json")


@app.get("/redis/{user_id}")
async def one_get(user_id: uuid.UUID) -> Response:
    value = await app.state.redis.get(f"bench:{user_id}")
    return Response(value or b"{}", media_type="application/json")


@app.get("/orm/{user_id}", response_model=UserRead)
async def orm_row(user_id: uuid.UUID) -> User | None:
    async with app.state.sessions() as session:
        return await session.get(User, user_id)
