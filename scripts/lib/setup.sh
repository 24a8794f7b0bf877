# Set-up shared by scripts/run.sh and scripts/test.sh: the virtualenv and the local services.
# Sourced, not executed. Idempotent: a second run does nothing that is already done.

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

log() { printf '==> %s\n' "$*" >&2; }

# ensure_uv: uv, the installer and resolver, at the version and hashes of
# scripts/requirements/uv.txt, in a venv of its own in the user's cache (shared by every
# checkout). It installs a lock in seconds where pip takes minutes, most of a warm set-up.
ensure_uv() {
  local lock=scripts/requirements/uv.txt
  UV_VENV=${XDG_CACHE_HOME:-$HOME/.cache}/user-service/uv-$(sha256sum "$lock" | cut -c1-16)
  if [ ! -x "$UV_VENV/bin/uv" ]; then
    log "installing $(grep -o '^uv==[^ ]*' "$lock") from $lock"
    rm -rf "$UV_VENV"
    "$PYTHON" -m venv "$UV_VENV"
    "$UV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
  fi
  UV="$UV_VENV/bin/uv"
}

# ensure_venv LOCK: create .venv and install scripts/requirements/LOCK.txt (runtime, embedded or dev;
# exact versions with hashes, see scripts/lock.sh), then the project itself without its
# dependencies, whenever that lock or pyproject.toml changed since the last install.
ensure_venv() {
  local lock="scripts/requirements/$1.txt" stamp
  if [ ! -f "$lock" ]; then log "no lock file $lock"; return 1; fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  stamp="$VENV/.installed-$1-$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing $lock into $VENV"
    ensure_uv
    # Bytecode compiled now, in parallel, so the first imports do not pay for it.
    "$UV" pip install --quiet --python "$VENV/bin/python" --compile-bytecode --require-hashes -r "$lock"
    "$UV" pip install --quiet --python "$VENV/bin/python" --no-deps -e .
    touch "$stamp"
  fi
  export PATH="$(cd "$VENV" && pwd)/bin:$PATH"
}

postgres_up() { "$VENV/bin/python" - <<'PY' 2>/dev/null
import asyncio, asyncpg, os
async def main():
    c = await asyncpg.connect(os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"), timeout=3)
    await c.close()
asyncio.run(main())
PY
}

redis_up() { "$VENV/bin/python" -c "import redis; redis.Redis(host='127.0.0.1', port=6379, socket_timeout=2).ping()" 2>/dev/null; }

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then log "cannot install $* without root"; return 1; fi
  if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; _APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ensure_jemalloc: Debian's libjemalloc2, the allocator the image preloads; the benchmark runs
# every server on it too (scripts/bench/stack.py).
ensure_jemalloc() {
  ldconfig -p 2>/dev/null | grep -q 'libjemalloc\.so\.2 ' && return 0
  log "installing libjemalloc2"
  apt_install libjemalloc2
}

# ensure_postgres: start the local cluster when it is down, install it when it is missing.
ensure_postgres() {
  postgres_up && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  local conf="/etc/postgresql/$version/main/pg_hba.conf"
  # Tests connect over TCP as user postgres without a password, as on the project's machines.
  if ! grep -qE '^host\s+all\s+all\s+127.0.0.1/32\s+trust' "$conf" 2>/dev/null; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$conf"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
  fi
  for _ in $(seq 1 30); do postgres_up && return 0; sleep 1; done
  log "PostgreSQL did not come up on 127.0.0.1:5432"; return 1
}

# ensure_redis: start a non-persistent Redis on 127.0.0.1:6379 when none answers there.
ensure_redis() {
  redis_up && return 0
  command -v redis-server >/dev/null || { log "installing Redis"; apt_install redis-server; }
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 20); do redis_up && return 0; sleep 0.5; done
  log "Redis did not come up on 127.0.0.1:6379"; return 1
}
