#!/usr/bin/env bash
# Runs the service on :8000 from a fresh machine: virtualenv, database, migration, gunicorn.
# Uses the local PostgreSQL and Redis when they answer (creating the `user_service` database),
# otherwise an embedded SQLite database with the cache and rate limiter in process memory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh

# Only what serving needs; the embedded fallback's packages only when it falls back.
ensure_venv runtime
if [ -z "${DATABASE_URL:-}" ] && postgres_up; then
  python - <<'PY'
import asyncio, asyncpg
async def main():
    c = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    if not await c.fetchval("SELECT 1 FROM pg_database WHERE datname = 'user_service'"):
        await c.execute('CREATE DATABASE "user_service"')
    await c.close()
asyncio.run(main())
PY
  export DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/user_service"
fi
if [ -z "${REDIS_URL:-}" ] && redis_up; then
  export REDIS_URL="redis://127.0.0.1:6379/0"
fi
if [ -z "${DATABASE_URL:-}${DATABASE_URL_FILE:-}" ] || [ -z "${REDIS_URL:-}${REDIS_URL_FILE:-}${REDIS_SENTINELS:-}${REDIS_CLUSTER_NODES:-}" ]; then
  ensure_venv embedded
fi
log "database: ${DATABASE_URL:-embedded SQLite (.data/)}; redis: ${REDIS_URL:-in-process}"
user-service migrate
export BIND="${BIND:-127.0.0.1:8000}"
log "serving on http://${BIND} (API docs at /docs)"
exec user-service serve
