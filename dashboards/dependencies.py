"""The "Dependencies and tuning" dashboard: database pool, queries, cache, Redis, limits, auth.

It answers "which part is at fault" once the overview shows users hurting, and gives the
numbers that DB_POOL_SIZE, DB_MAX_OVERFLOW and the cache settings are tuned from.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards import selectors as sel
from dashboards.layout import Board, new_dashboard
from dashboards.panels import Query, Step, rate_by_panel, timeseries_panel

UID = "user-service-dependencies"
TITLE = "user-service / Dependencies and tuning"

CHECKED_OUT = "user_service_db_pool_checked_out_connections"
POOL_MAX = "user_service_db_pool_max_connections"
POOL_SIZE = "user_service_db_pool_size_connections"
OVERFLOW = "user_service_db_pool_overflow_connections"
CHECKOUT_WAIT = "user_service_db_pool_checkout_wait_seconds_bucket"
CHECKOUT_TIMEOUTS = "user_service_db_pool_checkout_timeouts_total"
QUERY_DURATION = "user_service_db_query_duration_seconds"
DB_ERRORS = "user_service_db_errors_total"
CACHE = "user_service_cache_requests_total"
REDIS_ERRORS = "user_service_redis_errors_total"
BREAKER = "user_service_redis_breaker_open"
REDIS_TOPOLOGY = "user_service_redis_topology"
MASTER_CHANGES = "user_service_redis_master_changes_total"
DEPENDENCY_UP = "user_service_dependency_up"
RATE_LIMITED = "user_service_rate_limit_rejections_total"
AUTH = "user_service_auth_events_total"
HASH_DURATION = "user_service_password_hash_duration_seconds_bucket"


HIT = ', result="hit"'
HIT_OR_MISS = ', result=~"hit|miss"'
ERROR = ', result="error"'
BYPASS = ', result="bypass"'


def _first_screen(board: Board) -> None:
    """Which dependency is at fault, without scrolling: readiness per dependency, the Redis
    breaker, and every dependency's errors on one graph."""
    board.row("Which dependency is at fault?")
    board.add(
        timeseries_panel(
            "Readiness checks by dependency (1 = up)",
            "Result of the last /readyz check per dependency, worst pod: database 0 = pod not "
            "ready (UserServiceDatabaseUnreachable), schema 0 = migrations pending, redis 0 = "
            "Redis unreachable (the pod stays ready and degrades).",
            "bool_yes_no",
            [Query(f"min by (dependency) ({sel.series(DEPENDENCY_UP)})", "{{dependency}}")],
            maximum=1,
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Redis circuit breaker open (workers)",
            "Workers whose Redis breaker is open. While open, the service skips Redis entirely "
            "(cache bypassed, limits degraded) for REDIS_BREAKER_COOLDOWN seconds between "
            "probes. Non-zero for minutes fires UserServiceRedisUnavailable.",
            "short",
            [Query(f"max by (pod) ({sel.series(BREAKER)})", "{{pod}}")],
            thresholds=[Step(None, "green"), Step(1, "red")],
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Dependency errors (database, pool, Redis)",
            "Errors per second by where they happened: database errors by kind, pool checkout "
            "timeouts, Redis errors by component. The line that rises with the 5xx on the "
            "overview is the dependency at fault; flat lines with 5xx point at the code.",
            "ops",
            [
                Query(sel.rate_by(DB_ERRORS, "kind"), "database {{kind}}"),
                Query(f"sum({sel.rate(CHECKOUT_TIMEOUTS)})", "pool checkout timeouts"),
                Query(sel.rate_by(REDIS_ERRORS, "component"), "redis {{component}}"),
            ],
        ),
        width=8,
    )


def _pool(board: Board) -> None:
    board.row("Database pool")
    board.add(
        timeseries_panel(
            "Pool connections: checked out vs size and maximum",
            "Per pod, connections in use against DB_POOL_SIZE and the hard maximum (size + "
            "overflow, summed over workers). Checked out sitting at the maximum means requests "
            "queue for connections: expect checkout waits, then timeouts and 5xx.",
            "short",
            [
                Query(sel.sum_by("pod", CHECKED_OUT), "{{pod}} checked out"),
                Query(sel.sum_by("pod", POOL_SIZE), "{{pod}} pool size"),
                Query(sel.sum_by("pod", POOL_MAX), "{{pod}} max (size + overflow)"),
            ],
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Pool utilisation",
            "Checked-out connections as a share of the maximum, per pod. Above 90% for minutes "
            "fires UserServiceDBPoolSaturated: find slow queries first, grow the pool only "
            "within the Postgres max_connections budget.",
            "percentunit",
            [Query(f"{sel.sum_by('pod', CHECKED_OUT)} / {sel.sum_by('pod', POOL_MAX)}", "{{pod}}")],
            maximum=1,
            thresholds=[Step(None, "green"), Step(0.7, "orange"), Step(0.9, "red")],
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Overflow connections in use",
            "Connections opened beyond DB_POOL_SIZE. Occasional overflow is what it is for; "
            "overflow in use most of the time means the pool size is too small for the load "
            "(each overflow connection is opened and closed per use, costing latency).",
            "short",
            [Query(sel.sum_by("pod", OVERFLOW), "{{pod}}")],
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Checkout wait p95 / p99",
            "Time requests waited for a pool connection. Near zero when healthy; tens of ms "
            "means the pool is the bottleneck, and waits approaching DB_POOL_TIMEOUT become "
            "checkout timeouts.",
            "s",
            [
                Query(sel.quantile(0.95, CHECKOUT_WAIT), "p95"),
                Query(sel.quantile(0.99, CHECKOUT_WAIT), "p99"),
            ],
            thresholds=[Step(None, "green"), Step(0.05, "orange"), Step(1, "red")],
        ),
        width=8,
    )
    board.add(
        rate_by_panel(
            "Checkout timeouts",
            "Checkouts per second that gave up after DB_POOL_TIMEOUT; each is a failed request. "
            "Any sustained non-zero value means the pool is exhausted (UserServiceDBPool"
            "CheckoutTimeouts).",
            "ops",
            CHECKOUT_TIMEOUTS,
            "pod",
            thresholds=[Step(None, "green"), Step(0.01, "red")],
        ),
        width=8,
    )
    board.add(
        rate_by_panel(
            "Database errors by kind",
            "Failures requests saw: timeout (statement or connect), unavailable (connection "
            "refused/lost), statement_timeout (query exceeded DB_STATEMENT_TIMEOUT_MS). "
            "'unavailable' means the database is down or unreachable; 'statement_timeout' "
            "means a slow query or a lock.",
            "ops",
            DB_ERRORS,
            "kind",
        ),
        width=8,
    )


def _queries(board: Board) -> None:
    board.row("Database queries")
    board.add(
        timeseries_panel(
            "Query latency p95 / p99 by operation",
            "SQL statement duration by operation. SELECT above ~10 ms on this schema means a "
            "missing index, bloat or an overloaded database; slow writes often mean lock "
            "contention. Slow queries hold connections longer and drain the pool.",
            "s",
            [
                Query(
                    sel.quantile(0.95, f"{QUERY_DURATION}_bucket", "operation, le"),
                    "{{operation}} p95",
                ),
                Query(
                    sel.quantile(0.99, f"{QUERY_DURATION}_bucket", "operation, le"),
                    "{{operation}} p99",
                ),
            ],
            thresholds=[Step(None, "green"), Step(0.1, "orange"), Step(0.5, "red")],
        ),
        width=12,
    )
    board.add(
        rate_by_panel(
            "Query rate by operation",
            "Statements per second by operation. Queries per request rising after a deploy is "
            "an N+1; SELECTs rising while requests do not means the cache stopped absorbing "
            "reads.",
            "ops",
            f"{QUERY_DURATION}_count",
            "operation",
        ),
        width=12,
    )


def _cache(board: Board) -> None:
    board.row("Cache and Redis")
    lookups = sel.rate_by(CACHE, "pod")
    board.add(
        timeseries_panel(
            "Cache hit ratio",
            "Hits over hits + misses for the user cache. A drop after a deploy or a Redis "
            "restart is expected for about CACHE_TTL_SECONDS; a lasting low ratio sends every "
            "read to the database (watch query rate and pool utilisation).",
            "percentunit",
            [
                Query(
                    f"{sel.rate_by(CACHE, 'pod', HIT)} / {sel.rate_by(CACHE, 'pod', HIT_OR_MISS)}",
                    "{{pod}}",
                )
            ],
            maximum=1,
            thresholds=[Step(None, "red"), Step(0.5, "orange"), Step(0.8, "green")],
        ),
        width=8,
    )
    board.add(
        rate_by_panel(
            "Cache lookups by result",
            "Lookups per second by result: hit, miss, error (Redis failed), bypass (breaker "
            "open, or CACHE_ENABLED=false). Errors or bypasses mean Redis is unhealthy and reads "
            "fall through to the database.",
            "ops",
            CACHE,
            "result",
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Cache errors and bypasses (share of lookups)",
            "Share of lookups that could not use Redis. Above 5% for 10 minutes fires "
            "UserServiceCacheErrors; 100% bypass with the breaker open is Redis down.",
            "percentunit",
            [
                Query(f"{sel.rate_by(CACHE, 'pod', ERROR)} / {lookups}", "{{pod}} error"),
                Query(f"{sel.rate_by(CACHE, 'pod', BYPASS)} / {lookups}", "{{pod}} bypass"),
            ],
            maximum=1,
            thresholds=[Step(None, "green"), Step(0.05, "red")],
        ),
        width=8,
    )
    board.add(
        rate_by_panel(
            "Redis errors by component",
            "Failed or timed-out Redis commands by caller: cache, rate_limit, revocation "
            "(session state), readiness, lock. Errors in revocation mean session state is read "
            "from PostgreSQL instead (slower, still exact); in rate_limit, limits fail open "
            "or closed per RATE_LIMIT_FAIL_OPEN; in cache, reads fall through to the database.",
            "ops",
            REDIS_ERRORS,
            "component",
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Redis topology in use and failovers followed",
            "The mode each pod reaches Redis in (standalone, sentinel), and how often a worker "
            "found the master at a new address: each step is a Sentinel failover the pods "
            "followed with no restart. Master changes without a planned failover mean Redis is "
            "flapping; see the runbook's Redis failover section.",
            "short",
            [
                Query(f"max by (mode) ({sel.series(REDIS_TOPOLOGY)})", "mode: {{mode}}"),
                Query(
                    f"sum by (pod) (increase({MASTER_CHANGES}{{{sel.SERIES}}}[{sel.RATE}]))",
                    "{{pod}} master changes",
                ),
            ],
        ),
        width=8,
    )


def _auth(board: Board) -> None:
    board.row("Rate limiting and authentication")
    board.add(
        rate_by_panel(
            "Rate-limit rejections by scope",
            "Requests answered 429 per second. 'login' rising with login_failure is password "
            "guessing being throttled (working as intended); 'api' rising for normal clients "
            "means RATE_LIMIT_API is too low for them.",
            "reqps",
            RATE_LIMITED,
            "scope",
        ),
        width=8,
    )
    board.add(
        rate_by_panel(
            "Authentication outcomes",
            "Auth events per second. login_failure far above login_success is credential "
            "stuffing; refresh_reuse means a stolen refresh token was replayed (the session is "
            "revoked; details on the Authentication dashboard); invalid_token_rejected rising "
            "after a deploy means a JWT secret, issuer or audience mismatch.",
            "ops",
            AUTH,
            "event",
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Password hashing p95 by operation",
            "Argon2 time per hash (signup) and verify (login), in worker threads bounded by "
            "PASSWORD_HASH_CONCURRENCY, of the idle scheduling class: they take the CPU the event "
            "loops leave free. A rising p95 means the workers are busy with other requests, and "
            "logins, sign-ups and password changes wait rather than slow those down.",
            "s",
            [Query(sel.quantile(0.95, HASH_DURATION, "operation, le"), "{{operation}} p95")],
        ),
        width=8,
    )


def build() -> dashboard.Dashboard:
    builder = new_dashboard(
        TITLE,
        UID,
        "Database pool, queries, cache, Redis, rate limits and auth of user-service.",
        ["user-service", "dependencies"],
    )
    board = Board(builder)
    _first_screen(board)
    _pool(board)
    _queries(board)
    _cache(board)
    _auth(board)
    return board.builder
