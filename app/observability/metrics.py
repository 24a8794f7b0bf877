"""The service's own Prometheus metrics: the one place their names and labels are defined.

Dashboards, alert rules and the load-test gate read these names; tests check that every
name they use is exported here. Gauges carry a multiprocess mode so that the numbers stay
right when gunicorn runs several workers with PROMETHEUS_MULTIPROC_DIR set.
"""

from __future__ import annotations

import os
from typing import Final, Literal, get_args

from prometheus_client import Counter, Gauge, Histogram, values

# In multiprocess mode every sample write first asks for the process id, to notice a fork:
# one getpid() system call per write, eleven per request. The id is kept here instead and
# renewed in the child of every fork, which is the only time it changes.
_pid = os.getpid()


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


def _process_id() -> int:
    return _pid


os.register_at_fork(after_in_child=_renew_pid)
if values.ValueClass is not values.MutexValue:
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)  # type: ignore[no-untyped-call]


PREFIX: Final = "user_service"

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

BUILD_INFO: Final = Gauge(
    f"{PREFIX}_build_info",
    "Always 1; labels carry the running version and git commit.",
    ["version", "git_commit"],
    multiprocess_mode="max",
)
WORKER_PROCESSES: Final = Gauge(
    f"{PREFIX}_worker_processes",
    "Worker processes alive in this pod (1 per worker).",
    multiprocess_mode="livesum",
)

DB_POOL_SIZE: Final = Gauge(
    f"{PREFIX}_db_pool_size_connections",
    "Configured pool size (persistent connections), summed over live workers.",
    multiprocess_mode="livesum",
)
DB_POOL_MAX: Final = Gauge(
    f"{PREFIX}_db_pool_max_connections",
    "Pool size plus max overflow: the most connections the workers may open.",
    multiprocess_mode="livesum",
)
DB_POOL_CHECKED_OUT: Final = Gauge(
    f"{PREFIX}_db_pool_checked_out_connections",
    "Connections currently checked out of the pool.",
    multiprocess_mode="livesum",
)
DB_POOL_OVERFLOW: Final = Gauge(
    f"{PREFIX}_db_pool_overflow_connections",
    "Overflow connections in use beyond the pool size (never negative).",
    multiprocess_mode="livesum",
)
DB_POOL_CHECKOUT_WAIT: Final = Histogram(
    f"{PREFIX}_db_pool_checkout_wait_seconds",
    "Time a request waited to check a connection out of the pool.",
    buckets=SHORT_WAIT_BUCKETS,
)
DB_POOL_CHECKOUT_TIMEOUTS: Final = Counter(
    f"{PREFIX}_db_pool_checkout_timeouts",
    "Checkouts that gave up after DB_POOL_TIMEOUT.",
)
DB_QUERY_DURATION: Final = Histogram(
    f"{PREFIX}_db_query_duration_seconds",
    "Duration of SQL statements by operation.",
    ["operation"],
    buckets=SHORT_WAIT_BUCKETS,
)
DB_ERRORS: Final = Counter(
    f"{PREFIX}_db_errors",
    "Database failures seen by requests, by kind (timeout, unavailable, statement_timeout).",
    ["kind"],
)

CACHE_REQUESTS: Final = Counter(
    f"{PREFIX}_cache_requests",
    "Cache lookups by result: hit, miss, error (Redis failed), bypass (breaker open or off).",
    ["cache", "result"],
)
REDIS_ERRORS: Final = Counter(
    f"{PREFIX}_redis_errors",
    "Redis commands that failed or timed out, by the component that sent them.",
    ["component"],
)
# Redis topology (standalone, sentinel, cluster) and the failovers a worker followed.
REDIS_TOPOLOGY: Final = Gauge(
    f"{PREFIX}_redis_topology",
    "Always 1; the label names how the service reaches Redis.",
    ["mode"],
    multiprocess_mode="max",
)
REDIS_MASTER_CHANGES: Final = Counter(
    f"{PREFIX}_redis_master_changes_total",
    "Times a worker found Redis's master at a new address (a Sentinel or Cluster failover).",
)
REDIS_BREAKER_OPEN: Final = Gauge(
    f"{PREFIX}_redis_breaker_open",
    "1 while the Redis circuit breaker is open in a worker (summed over workers).",
    multiprocess_mode="livesum",
)

AUTH_EVENTS: Final = Counter(
    f"{PREFIX}_auth_events",
    "Authentication outcomes by event.",
    ["event"],
)
SESSION_DB_LOOKUPS: Final = Counter(
    f"{PREFIX}_session_db_lookups",
    "Admissions that read session state from PostgreSQL, by reason (redis_unavailable: the "
    "fallback while Redis is down; cache_miss and lease_missing: refills).",
    ["reason"],
)
SESSIONS_ACTIVE: Final = Gauge(
    f"{PREFIX}_sessions_active",
    "Live (not revoked, not expired) sessions in PostgreSQL, counted every 15 s.",
    multiprocess_mode="livemax",
)
RATE_LIMIT_REJECTIONS: Final = Counter(
    f"{PREFIX}_rate_limit_rejections",
    "Requests answered 429 by the rate limiter, by scope.",
    ["scope"],
)
PASSWORD_HASH_DURATION: Final = Histogram(
    f"{PREFIX}_password_hash_duration_seconds",
    "Time spent hashing or verifying a password (Argon2id, in a worker thread).",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

DEPENDENCY_UP: Final = Gauge(
    f"{PREFIX}_dependency_up",
    "1 when the last readiness check found the dependency usable, else 0 (min over workers).",
    ["dependency"],
    multiprocess_mode="livemin",
)


def record_cache(result: CacheResult, cache: str = "user") -> None:
    CACHE_REQUESTS.labels(cache=cache, result=result).inc()


def record_redis_error(component: RedisComponent) -> None:
    REDIS_ERRORS.labels(component=component).inc()


def record_auth(event: AuthEvent) -> None:
    AUTH_EVENTS.labels(event=event).inc()


def record_session_lookup(reason: SessionLookupReason) -> None:
    SESSION_DB_LOOKUPS.labels(reason=reason).inc()


def record_rate_limited(scope: RateLimitScope) -> None:
    RATE_LIMIT_REJECTIONS.labels(scope=scope).inc()


def record_dependency(dependency: Dependency, up: bool) -> None:
    DEPENDENCY_UP.labels(dependency=dependency).set(1 if up else 0)


def initialise_label_sets() -> None:
    """Create every known label combination at 0, so rate() and dashboards never see gaps."""
    for result in ("hit", "miss", "error", "bypass"):
        CACHE_REQUESTS.labels(cache="user", result=result)
    for component in ("cache", "rate_limit", "revocation", "readiness", "lock"):
        REDIS_ERRORS.labels(component=component)
    for event in get_args(AuthEvent):
        AUTH_EVENTS.labels(event=event)
    for reason in get_args(SessionLookupReason):
        SESSION_DB_LOOKUPS.labels(reason=reason)
    for scope in get_args(RateLimitScope):
        RATE_LIMIT_REJECTIONS.labels(scope=scope)
    for kind in ("timeout", "unavailable", "statement_timeout"):
        DB_ERRORS.labels(kind=kind)
    for operation in ("hash", "verify"):
        PASSWORD_HASH_DURATION.labels(operation=operation)
    initialise_key_label_sets()


# Signing keys, JWKS and introspection.
KeyStateLabel = Literal["next", "active", "retired", "deleted"]
JwksResult = Literal["ok", "not_modified", "unavailable"]
IntrospectionResult = Literal["active", "inactive", "unauthorized", "rate_limited"]

SIGNING_KEY_ACTIVE_AGE: Final = Gauge(
    f"{PREFIX}_signing_key_active_age_seconds",
    "Seconds since the signing key in use was activated (-1: no active key).",
    multiprocess_mode="livemax",
)
SIGNING_KEY_NEXT_PRESENT: Final = Gauge(
    f"{PREFIX}_signing_key_next_present",
    "1 when a next key is published, ready for the coming rotation.",
    multiprocess_mode="livemin",
)
SIGNING_KEYS: Final = Gauge(
    f"{PREFIX}_signing_keys",
    "Signing keys by lifecycle state, as this worker last loaded them.",
    ["state"],
    multiprocess_mode="livemax",
)
SIGNING_KEY_RELOAD_TIMESTAMP: Final = Gauge(
    f"{PREFIX}_signing_key_reload_timestamp_seconds",
    "When the worker that reloaded its keys longest ago last did so (epoch seconds).",
    multiprocess_mode="livemin",
)
SIGNING_KEY_RELOAD_FAILURES: Final = Counter(
    f"{PREFIX}_signing_key_reload_failures",
    "Key reloads from the database that failed (the keys already loaded stay in use).",
)
SIGNING_KEY_ROTATION_PERIOD: Final = Gauge(
    f"{PREFIX}_signing_key_rotation_period_seconds",
    "Configured period of scheduled key rotation (0: none scheduled).",
    multiprocess_mode="livemax",
)
TOKENS_UNKNOWN_KID: Final = Counter(
    f"{PREFIX}_tokens_unknown_kid",
    "Tokens presented with a kid that is not published (unknown, deleted, or none).",
)
JWKS_REQUESTS: Final = Counter(
    f"{PREFIX}_jwks_requests",
    "JWKS requests by result: ok, not_modified (ETag matched), unavailable (no key yet).",
    ["result"],
)
INTROSPECTION_REQUESTS: Final = Counter(
    f"{PREFIX}_introspection_requests",
    "Introspection requests by result.",
    ["result"],
)
INTROSPECTION_DURATION: Final = Histogram(
    f"{PREFIX}_introspection_duration_seconds",
    "Time to answer an authenticated introspection request.",
    buckets=SHORT_WAIT_BUCKETS,
)


def record_introspection(result: IntrospectionResult) -> None:
    INTROSPECTION_REQUESTS.labels(result=result).inc()


def initialise_key_label_sets() -> None:
    for state in get_args(KeyStateLabel):
        SIGNING_KEYS.labels(state=state)
    for jwks_result in get_args(JwksResult):
        JWKS_REQUESTS.labels(result=jwks_result)
    for result in get_args(IntrospectionResult):
        INTROSPECTION_REQUESTS.labels(result=result)
