"""The service's own Prometheus metrics: the one place their names and labels are defined.

Dashboards, alert rules and the load-test gate read these names; tests check that every
name they use is exported here. Gauges carry a multiprocess mode so that the numbers stay
right when gunicorn runs several workers with PROMETHEUS_MULTIPROC_DIR set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache, partial
from typing import Final, Literal, get_args

from prometheus_client import Counter, Gauge, Histogram

from app.observability import metric_values

# Before any metric exists: in multiprocess mode samples are kept in memory and written
# to the worker's file in batches (metric_values.py), not on every update.
metric_values.install()


PREFIX: Final = "user_service"
# How a gauge combines its workers' values (the live* modes forget a dead worker's).
GaugeMode = Literal["max", "livesum", "livemin", "livemax"]


def _gauge(name: str, documentation: str, labels: Sequence[str] = (), *, mode: GaugeMode) -> Gauge:
    """A gauge of the service; `mode` says how the workers' values combine (multiprocess)."""
    return Gauge(f"{PREFIX}_{name}", documentation, labels, multiprocess_mode=mode)


def _counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    return Counter(f"{PREFIX}_{name}", documentation, labels)


def _histogram(
    name: str, documentation: str, labels: Sequence[str] = (), *, buckets: Sequence[float]
) -> Histogram:
    return Histogram(f"{PREFIX}_{name}", documentation, labels, buckets=buckets)


# The latency objective's threshold (seconds) must be one of these bucket bounds.
HTTP_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SHORT_WAIT_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

CacheResult = Literal["hit", "miss", "error", "bypass"]
RedisComponent = Literal["cache", "rate_limit", "revocation", "readiness", "lock"]
AuthEvent = Literal[
    "login_success",
    "login_failure",
    "refresh_success",
    "refresh_failure",
    "refresh_reuse",
    "refresh_grace",
    "login_throttled",
    "revoked_token_rejected",
    "invalid_token_rejected",
    "logout",
]
RateLimitScope = Literal["login", "api", "introspection"]
# Why admission read a session's state from PostgreSQL instead of the Redis cache.
SessionLookupReason = Literal["redis_unavailable", "cache_miss", "lease_missing"]
Dependency = Literal["database", "redis", "schema"]
DbErrorKind = Literal["timeout", "unavailable", "statement_timeout"]
HashOperation = Literal["hash", "verify"]

BUILD_INFO: Final = _gauge(
    "build_info",
    "Always 1; labels carry the running version and git commit.",
    ["version", "git_commit"],
    mode="max",
)
WORKER_PROCESSES: Final = _gauge(
    "worker_processes",
    "Worker processes alive in this pod (1 per worker).",
    mode="livesum",
)

DB_POOL_SIZE: Final = _gauge(
    "db_pool_size_connections",
    "Configured pool size (persistent connections), summed over live workers.",
    mode="livesum",
)
DB_POOL_MAX: Final = _gauge(
    "db_pool_max_connections",
    "Pool size plus max overflow: the most connections the workers may open.",
    mode="livesum",
)
DB_POOL_CHECKED_OUT: Final = _gauge(
    "db_pool_checked_out_connections",
    "Connections currently checked out of the pool.",
    mode="livesum",
)
DB_POOL_OVERFLOW: Final = _gauge(
    "db_pool_overflow_connections",
    "Overflow connections in use beyond the pool size (never negative).",
    mode="livesum",
)
DB_POOL_CHECKOUT_WAIT: Final = _histogram(
    "db_pool_checkout_wait_seconds",
    "Time a request waited to check a connection out of the pool.",
    buckets=SHORT_WAIT_BUCKETS,
)
DB_POOL_CHECKOUT_TIMEOUTS: Final = _counter(
    "db_pool_checkout_timeouts",
    "Checkouts that gave up after DB_POOL_TIMEOUT.",
)
DB_QUERY_DURATION: Final = _histogram(
    "db_query_duration_seconds",
    "Duration of SQL statements by operation.",
    ["operation"],
    buckets=SHORT_WAIT_BUCKETS,
)
DB_ERRORS: Final = _counter(
    "db_errors",
    "Database failures seen by requests, by kind (timeout, unavailable, statement_timeout).",
    ["kind"],
)

CACHE_REQUESTS: Final = _counter(
    "cache_requests",
    "Cache lookups by result: hit, miss, error (Redis failed), bypass (breaker open or off).",
    ["cache", "result"],
)
REDIS_ERRORS: Final = _counter(
    "redis_errors",
    "Redis commands that failed or timed out, by the component that sent them.",
    ["component"],
)
# Redis topology (standalone, sentinel, cluster) and the failovers a worker followed.
REDIS_TOPOLOGY: Final = _gauge(
    "redis_topology",
    "Always 1; the label names how the service reaches Redis.",
    ["mode"],
    mode="max",
)
REDIS_MASTER_CHANGES: Final = _counter(
    "redis_master_changes_total",
    "Times a worker found Redis's master at a new address (a Sentinel or Cluster failover).",
)
REDIS_BREAKER_OPEN: Final = _gauge(
    "redis_breaker_open",
    "1 while the Redis circuit breaker is open in a worker (summed over workers).",
    mode="livesum",
)

AUTH_EVENTS: Final = _counter(
    "auth_events",
    "Authentication outcomes by event.",
    ["event"],
)
SESSION_DB_LOOKUPS: Final = _counter(
    "session_db_lookups",
    "Admissions that read session state from PostgreSQL, by reason (redis_unavailable: the "
    "fallback while Redis is down; cache_miss and lease_missing: refills).",
    ["reason"],
)
SESSIONS_ACTIVE: Final = _gauge(
    "sessions_active",
    "Live (not revoked, not expired) sessions in PostgreSQL, counted every 15 s.",
    mode="livemax",
)
RATE_LIMIT_REJECTIONS: Final = _counter(
    "rate_limit_rejections",
    "Requests answered 429 by the rate limiter, by scope.",
    ["scope"],
)
PASSWORD_HASH_DURATION: Final = _histogram(
    "password_hash_duration_seconds",
    "Time spent hashing or verifying a password (Argon2id, in a worker thread).",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

EVENT_LOOP_LAG: Final = _histogram(
    "event_loop_lag_seconds",
    "How much later than due a worker's event loop ran a timer, checked every 0.1 s: the "
    "wait any ready request had before its code ran (CPU starvation or a blocked loop).",
    buckets=SHORT_WAIT_BUCKETS,
)

DEPENDENCY_UP: Final = _gauge(
    "dependency_up",
    "1 when the last readiness check found the dependency usable, else 0 (min over workers).",
    ["dependency"],
    mode="livemin",
)


# A labelled child, found once per label values: labels() costs about ten times the
# increment itself (validation, a lock, a dict lookup), and a cached read counts one.
_child = cache(lambda metric, *values: metric.labels(*values))


def _counter_child(metric: Counter, *values: str) -> Counter:
    child: Counter = _child(metric, *values)
    return child


def record_cache(result: CacheResult, cache: str = "user") -> None:
    _counter_child(CACHE_REQUESTS, cache, result).inc()


def record_redis_error(component: RedisComponent) -> None:
    _counter_child(REDIS_ERRORS, component).inc()


def record_auth(event: AuthEvent) -> None:
    _counter_child(AUTH_EVENTS, event).inc()


def record_session_lookup(reason: SessionLookupReason) -> None:
    _counter_child(SESSION_DB_LOOKUPS, reason).inc()


def record_rate_limited(scope: RateLimitScope) -> None:
    _counter_child(RATE_LIMIT_REJECTIONS, scope).inc()


def record_dependency(dependency: Dependency, up: bool) -> None:
    gauge: Gauge = _child(DEPENDENCY_UP, dependency)
    gauge.set(1 if up else 0)


def initialise_label_sets() -> None:
    """Create every known label combination at 0, so rate() and dashboards never see gaps."""
    known: tuple[tuple[Callable[..., object], str, tuple[str, ...]], ...] = (
        (partial(CACHE_REQUESTS.labels, cache="user"), "result", get_args(CacheResult)),
        (REDIS_ERRORS.labels, "component", get_args(RedisComponent)),
        (AUTH_EVENTS.labels, "event", get_args(AuthEvent)),
        (SESSION_DB_LOOKUPS.labels, "reason", get_args(SessionLookupReason)),
        (RATE_LIMIT_REJECTIONS.labels, "scope", get_args(RateLimitScope)),
        (DB_ERRORS.labels, "kind", get_args(DbErrorKind)),
        (PASSWORD_HASH_DURATION.labels, "operation", get_args(HashOperation)),
        (SIGNING_KEYS.labels, "state", get_args(KeyStateLabel)),
        (JWKS_REQUESTS.labels, "result", get_args(JwksResult)),
        (INTROSPECTION_REQUESTS.labels, "result", get_args(IntrospectionResult)),
    )
    for labels, name, label_values in known:
        for value in label_values:
            labels(**{name: value})


# Signing keys, JWKS and introspection.
KeyStateLabel = Literal["next", "active", "retired", "deleted"]
JwksResult = Literal["ok", "not_modified", "unavailable"]
IntrospectionResult = Literal["active", "inactive", "unauthorized", "rate_limited"]

SIGNING_KEY_ACTIVE_AGE: Final = _gauge(
    "signing_key_active_age_seconds",
    "Seconds since the signing key in use was activated (-1: no active key).",
    mode="livemax",
)
SIGNING_KEY_NEXT_PRESENT: Final = _gauge(
    "signing_key_next_present",
    "1 when a next key is published, ready for the coming rotation.",
    mode="livemin",
)
SIGNING_KEYS: Final = _gauge(
    "signing_keys",
    "Signing keys by lifecycle state, as this worker last loaded them.",
    ["state"],
    mode="livemax",
)
SIGNING_KEY_RELOAD_TIMESTAMP: Final = _gauge(
    "signing_key_reload_timestamp_seconds",
    "When the worker that reloaded its keys longest ago last did so (epoch seconds).",
    mode="livemin",
)
SIGNING_KEY_RELOAD_FAILURES: Final = _counter(
    "signing_key_reload_failures",
    "Key reloads from the database that failed (the keys already loaded stay in use).",
)
SIGNING_KEY_ROTATION_PERIOD: Final = _gauge(
    "signing_key_rotation_period_seconds",
    "Configured period of scheduled key rotation (0: none scheduled).",
    mode="livemax",
)
TOKENS_UNKNOWN_KID: Final = _counter(
    "tokens_unknown_kid",
    "Tokens presented with a kid that is not published (unknown, deleted, or none).",
)
JWKS_REQUESTS: Final = _counter(
    "jwks_requests",
    "JWKS requests by result: ok, not_modified (ETag matched), unavailable (no key yet).",
    ["result"],
)
INTROSPECTION_REQUESTS: Final = _counter(
    "introspection_requests",
    "Introspection requests by result.",
    ["result"],
)
INTROSPECTION_DURATION: Final = _histogram(
    "introspection_duration_seconds",
    "Time to answer an authenticated introspection request.",
    buckets=SHORT_WAIT_BUCKETS,
)


def record_introspection(result: IntrospectionResult) -> None:
    _counter_child(INTROSPECTION_REQUESTS, result).inc()
