"""The "Authentication" dashboard: signing keys and rotation, the JWKS, tokens presented
with an unknown key, introspection; sessions, refresh-token reuse, login throttling, and how
much admission leans on PostgreSQL (the Redis-down fallback and cache refills).

It answers "can every service still verify our tokens" (a key active, a next one published
before the rotation, replicas reloading their keys) and "who is presenting tokens we never
signed", next to the introspection load other services put on us.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard, timeseries

from dashboards import selectors as sel
from dashboards.layout import Board, new_dashboard
from dashboards.panels import Query, Step, rate_by_panel, stat_panel, timeseries_panel

UID = "user-service-auth"
TITLE = "user-service / Authentication"

ACTIVE_AGE = "user_service_signing_key_active_age_seconds"
NEXT_PRESENT = "user_service_signing_key_next_present"
KEYS = "user_service_signing_keys"
RELOADED = "user_service_signing_key_reload_timestamp_seconds"
RELOAD_FAILURES = "user_service_signing_key_reload_failures_total"
ROTATION_PERIOD = "user_service_signing_key_rotation_period_seconds"
UNKNOWN_KID = "user_service_tokens_unknown_kid_total"
JWKS = "user_service_jwks_requests_total"
INTROSPECTION = "user_service_introspection_requests_total"
INTROSPECTION_DURATION = "user_service_introspection_duration_seconds_bucket"
AUTH = "user_service_auth_events_total"
RATE_LIMITED = "user_service_rate_limit_rejections_total"
REJECTED = ', event=~"invalid_token_rejected|revoked_token_rejected"'
SESSIONS_ACTIVE = "user_service_sessions_active"
SESSION_DB_LOOKUPS = "user_service_session_db_lookups_total"


def _keys(board: Board) -> None:
    board.row("Signing keys and rotation")
    board.add(
        stat_panel(
            "Active signing key age",
            "Time since the key that signs today was activated (the oldest any pod reports). "
            "Above 1.5x the rotation period fires UserServiceSigningKeyRotationOverdue: the "
            "rotation CronJob has not run, or could not activate the next key.",
            "s",
            [Query(f"max({sel.series(ACTIVE_AGE)})", "age")],
            thresholds=[Step(None, "green")],
        ),
        width=6,
    )
    board.add(
        stat_panel(
            "Next key published",
            "1 when every pod holds a next key, published ahead of the coming rotation. 0 with "
            "a rotation scheduled fires UserServiceSigningKeyNextMissing: the next rotation would "
            "have nothing safe to activate.",
            "short",
            [Query(f"min({sel.series(NEXT_PRESENT)})", "next key")],
            thresholds=[Step(None, "red"), Step(1, "green")],
        ),
        width=6,
    )
    board.add(
        stat_panel(
            "Rotation period",
            "SIGNING_KEY_ROTATION_PERIOD_SECONDS from the chart's keys.rotation (0: no scheduled "
            "rotation, keys rotate only by hand).",
            "s",
            [Query(f"max({sel.series(ROTATION_PERIOD)})", "period")],
        ),
        width=6,
    )
    board.add(
        stat_panel(
            "Key reload lag (oldest pod)",
            "Seconds since the pod that reloaded its keys from PostgreSQL longest ago last did. "
            "Normally below SIGNING_KEY_REFRESH_SECONDS; a growing lag means the database is "
            "unreachable and that pod still signs with the keys it had.",
            "s",
            [Query(f"time() - min({sel.series(RELOADED)})", "lag")],
            thresholds=[Step(None, "green"), Step(60, "orange"), Step(300, "red")],
        ),
        width=6,
    )
    board.add(
        timeseries_panel(
            "Keys by lifecycle state",
            "Keys as the pods last loaded them: next (published, not signing), active "
            "(signing), retired (published until tokens it signed expire), deleted. One active "
            "key; during a rotation the old one turns retired.",
            "short",
            [Query(f"max by (state) ({sel.series(KEYS)})", "{{state}}")],
        ),
        width=12,
    )
    board.add(
        rate_by_panel(
            "Key reload failures",
            "Reloads of the signing keys that failed, per pod. The keys already loaded stay in "
            "use; a lasting failure delays the pods' view of a rotation.",
            "ops",
            RELOAD_FAILURES,
            "pod",
        ),
        width=12,
    )


def _verification(board: Board) -> None:
    board.row("Verification by other services")
    board.add(
        rate_by_panel(
            "JWKS requests by result",
            "Fetches of /.well-known/jwks.json: ok, not_modified (the consumer's ETag matched), "
            "unavailable (no key loaded yet). Consumers caching for the announced max-age keep "
            "this low and steady.",
            "reqps",
            JWKS,
            "result",
        ),
        width=8,
    )
    board.add(
        rate_by_panel(
            "Tokens with an unknown kid",
            "Tokens presented with a key id this service does not publish (never existed, "
            "deleted, or none at all). A spike fires UserServiceUnknownKidTokens: forged tokens, "
            "or a key deleted too early.",
            "reqps",
            UNKNOWN_KID,
            "pod",
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Unknown-kid share of rejected tokens",
            "Unknown-kid tokens as a share of every token refused (invalid or revoked). Near 1 "
            "means tokens are being refused for their key, not their claims.",
            "percentunit",
            [
                Query(
                    f"sum({sel.rate(UNKNOWN_KID)}) / "
                    f"clamp_min(sum({sel.rate(AUTH, sel.SERIES + REJECTED)}), 1e-9)",
                    "share",
                )
            ],
            maximum=1,
        ),
        width=8,
    )


def _introspection(board: Board) -> None:
    board.row("Introspection")
    board.add(
        rate_by_panel(
            "Introspection requests by result",
            "POST /api/v1/auth/introspect by answer: active, inactive (revoked, expired, forged), "
            "unauthorized (client credentials wrong), rate_limited (RATE_LIMIT_INTROSPECTION).",
            "reqps",
            INTROSPECTION,
            "result",
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Introspection latency p50 / p95 / p99",
            "Time to answer an authenticated introspection: signature check plus one session "
            "state read. Rising with Redis latency is expected; rising alone is CPU.",
            "s",
            [
                Query(
                    sel.quantile(q, INTROSPECTION_DURATION),
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
        ),
        width=8,
    )
    board.add(
        timeseries_panel(
            "Introspection clients refused or limited",
            "Unauthorized introspection attempts and requests refused by the per-client limit.",
            "reqps",
            [
                Query(
                    sel.rate_by(INTROSPECTION, "result", ', result=~"unauthorized|rate_limited"'),
                    "{{result}}",
                ),
                Query(
                    sel.rate_by(RATE_LIMITED, "scope", ', scope="introspection"'), "429 {{scope}}"
                ),
            ],
        ),
        width=8,
    )


def _events_panel(
    title: str, description: str, events: str, thresholds: Sequence[Step] = ()
) -> timeseries.Panel:
    """Auth events per second, one line per event of the `events` regex."""
    query = sel.rate_by(AUTH, "event", f', event=~"{events}"')
    return timeseries_panel(
        title, description, "ops", [Query(query, "{{event}}")], thresholds=thresholds
    )


def _sessions(board: Board) -> None:
    board.row("Sessions")
    board.add(
        stat_panel(
            "Active sessions",
            "Live sessions (not revoked, not expired) in PostgreSQL, counted every 15 s by "
            "each worker (the largest count is shown). A sudden drop with no logout spike is "
            "a mass revocation (password resets, an admin revoke-all).",
            "short",
            [Query(f"max({sel.series(SESSIONS_ACTIVE)})", "sessions")],
        ),
        width=6,
    )
    board.add(
        _events_panel(
            "Logins, refreshes and logouts",
            "Session lifecycle per second: login_success opens a session, refresh_success "
            "rotates one, logout closes one. refresh_grace counts a replaced refresh token sent "
            "again within REFRESH_REUSE_GRACE_SECONDS by the same client (two tabs): normal.",
            "login_success|refresh_success|refresh_grace|logout",
        ),
        width=9,
    )
    board.add(
        _events_panel(
            "Revoked and invalid tokens refused",
            "revoked_token_rejected: a token of a revoked session came back (after a logout, "
            "password change or revoke-all this is expected for a while). invalid_token_"
            "rejected rising after a deploy: a signing key, issuer or audience mismatch.",
            "revoked_token_rejected|invalid_token_rejected",
        ),
        width=9,
    )


def _attacks(board: Board) -> None:
    board.row("Attacks")
    board.add(
        _events_panel(
            "Refresh token reuse (session revoked)",
            "A refresh token already rotated came back outside the grace window or from "
            "another client: someone holds a copy. The session is revoked and a security "
            "event with its session id is logged (app.security, refresh_token_reuse). Any "
            "sustained rate is worth a look; see the runbook.",
            "refresh_reuse",
            thresholds=[Step(None, "green"), Step(0.01, "red")],
        ),
        width=12,
    )
    board.add(
        _events_panel(
            "Throttled logins (per account) vs failures",
            "login_throttled: attempts refused with 429 because one account failed too often "
            "(LOGIN_THROTTLE_*), whatever the address. Throttled logins spread over many "
            "accounts with failures far above successes is password spraying; one account "
            "throttled now and then is a user who forgot a password (runbook).",
            "login_throttled|login_failure|login_success",
        ),
        width=12,
    )


def _fallback(board: Board) -> None:
    board.row("Redis and PostgreSQL")
    board.add(
        timeseries_panel(
            "Admission served from PostgreSQL",
            "Requests whose session state was read from PostgreSQL instead of Redis, by "
            "reason. redis_unavailable: Redis is down or its breaker is open, every "
            "authenticated request costs one primary-key lookup (watch the pool). cache_miss "
            "and lease_missing: refills after a restart, an eviction or a revocation Redis "
            "missed; they should fall back to near zero within seconds.",
            "reqps",
            [
                Query(
                    f"sum by (reason) ({sel.rate(SESSION_DB_LOOKUPS)})",
                    "{{reason}}",
                )
            ],
        ),
        width=24,
    )


def build() -> dashboard.Dashboard:
    builder = new_dashboard(
        TITLE,
        UID,
        "Signing keys and rotation, JWKS, unknown-kid tokens, introspection, sessions, "
        "refresh-token reuse, login throttling and the PostgreSQL fallback of user-service.",
        ["user-service", "authentication"],
    )
    board = Board(builder)
    _keys(board)
    _verification(board)
    _introspection(board)
    _sessions(board)
    _attacks(board)
    _fallback(board)
    return board.builder
