"""How the service reaches Redis: one server (REDIS_URL), the master a set of Sentinels names
(REDIS_SENTINELS), or a Redis Cluster (REDIS_CLUSTER_NODES), followed across failovers
without a restart."""

from __future__ import annotations

from typing import Any, cast

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from app.observability.metrics import REDIS_MASTER_CHANGES, REDIS_TOPOLOGY
from app.settings import Settings

log = structlog.get_logger("app.redis")


def _connection_options(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.redis_socket_timeout_seconds,
        "socket_connect_timeout": settings.redis_connect_timeout_seconds,
        # One immediate retry, on connection errors only: it replaces a connection that died
        # with a Redis restart or failover, and a refused connect costs microseconds. Timeouts
        # are not retried (they would double the wait on a sick Redis); the breaker has those.
        # The asyncio Retry: the synchronous one hands back the coroutine unawaited, so the
        # async client never retried with it.
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        "health_check_interval": 30,
    }


def _pool_wait(settings: Settings) -> float:
    # A bounded pool blocks rather than raises; never let that wait outlast a request.
    return max(0.5, settings.redis_socket_timeout_seconds * 4)


class _SentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The Sentinel pool, bounded and blocking like the standalone one, that notices when the
    master it connects to moved."""

    async def get_master_address(self) -> Any:
        previous = self.master_address
        address = await super().get_master_address()  # type: ignore[no-untyped-call]
        if previous is not None and address != previous:
            REDIS_MASTER_CHANGES.inc()
            log.warning(
                "redis_master_changed", previous=f"{previous[0]}:{previous[1]}",
                current=f"{address[0]}:{address[1]}",
            )  # fmt: skip
        return address


def connect_standalone(settings: Settings) -> Redis:
    REDIS_TOPOLOGY.labels(mode="standalone").set(1)
    pool = BlockingConnectionPool.from_url(
        settings.redis_dsn,
        max_connections=settings.redis_max_connections,
        timeout=_pool_wait(settings),
        **_connection_options(settings),
    )
    # The client owns its pool: closing it closes the pool's connections (as Sentinel's
    # master_for does); Redis(connection_pool=...) would leave them open.
    return Redis.from_pool(pool)


def connect_sentinel(settings: Settings) -> Redis:
    """A client of the current master: each new connection asks the Sentinels where it is,
    and a connection to a master that became a replica is dropped (redis-py's Sentinel)."""
    REDIS_TOPOLOGY.labels(mode="sentinel").set(1)
    sentinel_password = settings.redis_sentinel_password_value or None
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_addresses,
        sentinel_kwargs={
            "password": sentinel_password,
            "socket_timeout": settings.redis_socket_timeout_seconds,
            "socket_connect_timeout": settings.redis_connect_timeout_seconds,
        },
    )
    client: Redis = sentinel.master_for(
        settings.redis_sentinel_master,
        connection_pool_class=_SentinelPool,
        password=settings.redis_password_value or None,
        max_connections=settings.redis_max_connections,
        timeout=_pool_wait(settings),
        **_connection_options(settings),
    )
    return client


def connect_cluster(settings: Settings) -> Redis:
    """A Redis Cluster client: it learns the slot map from the seed nodes, sends each command
    to the master of its key's slot, and on a failover (a refused connection, MOVED) reloads
    the map and retries. Every key of the service shares the hash tag in CACHE_KEY_PREFIX, so
    each Lua script and pipeline lands on one slot: one round trip, as with one server."""
    REDIS_TOPOLOGY.labels(mode="cluster").set(1)
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in settings.redis_cluster_addresses],
        password=settings.redis_password_value or None,
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
        # A failover takes the cluster about cluster-node-timeout to settle; the breaker, not
        # a long retry loop, keeps requests from waiting through it.
        cluster_error_retry_attempts=1,
    )
    # The same command, script and pipeline API the service uses on one server.
    return cast(Redis, client)
