"""Token verification throughput, one run on this machine: offline verification by a consumer
using the JWKS (tokens per second per core) and introspection requests per second, each next
to the cached, authenticated GET /api/v1/users/{id} of the same service in the same run.

    python -m scripts.token_throughput [--seconds 10] [--connections 32] [--users 200]

The service runs under gunicorn (2 workers) with its own redis-server and database on
127.0.0.1 (the benchmark's stack); wrk drives both HTTP rows the same way. Only the ratios
within one run mean anything.
"""

from __future__ import annotations

import argparse
import base64
import re
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import jwt

from scripts.bench.stack import REPO, database, redis_server, service

CLIENT_ID, CLIENT_SECRET = "bench", "bench-introspection-secret-0123456789"

# Replays "METHOD\tPATH\tAUTHORIZATION\tBODY" lines, each connection from its own offset.
_LUA = r"""
local requests = {}
local position = 0
local count = 0
function setup(thread) count = count + 1; thread:set("index", count) end
function init(args)
  for line in io.lines(args[1]) do
    local method, path, auth, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
    local headers = {Authorization = auth}
    local payload = nil
    if body ~= "" then
      headers["Content-Type"] = "application/x-www-form-urlencoded"
      payload = body
    end
    requests[#requests + 1] = wrk.format(method, path, headers, payload)
  end
  position = math.floor(#requests * ((index or 1) - 1) / 2)
end
function request()
  position = position % #requests + 1
  return requests[position]
end
"""


def _wrk(base_url: str, lines: list[str], seconds: int, connections: int, work: Path) -> float:
    script, listing = work / "replay.lua", work / f"targets-{uuid.uuid4().hex[:6]}.tsv"
    script.write_text(_LUA)
    listing.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [
            *("wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script)),
            *(base_url, "--", str(listing)),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"errors during the run:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def _offline(base_url: str, tokens: list[str], seconds: float) -> tuple[float, int]:
    """A consumer: discovery, PyJWKClient with its JWK Set cache, full verification of every
    token (signature by kid with the pinned algorithm, exp, aud, iss). Per CPU second."""
    meta = httpx.get(f"{base_url}/.well-known/oauth-authorization-server").json()
    client = jwt.PyJWKClient(meta["jwks_uri"], lifespan=300)
    verified = 0
    cpu_start, deadline = time.process_time(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        for token in tokens:
            key = client.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience="user-service",
                issuer=meta["issuer"],
            )
            assert claims["typ"] == "access"
            verified += 1
    return verified / (time.process_time() - cpu_start), verified


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()
    with redis_server() as redis_url, database() as database_url:
        env = {
            "APP_ENV": "test",
            "WEB_CONCURRENCY": "2",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "INTROSPECTION_CLIENTS": f"{CLIENT_ID}:{CLIENT_SECRET}",
            "RATE_LIMIT_API": "100000000/minute",
            "RATE_LIMIT_LOGIN": "100000000/minute",
            "RATE_LIMIT_INTROSPECTION": "100000000/minute",
            "ACCESS_TOKEN_TTL_SECONDS": "3600",
            "CACHE_TTL_SECONDS": "3600",
            # Seeding logs in every user: cheap hashes keep that short (not measured).
            "ARGON2_MEMORY_KIB": "8192",
            "ARGON2_TIME_COST": "1",
            "OTEL_SDK_DISABLED": "true",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
        }
        with (
            service(env, REPO / "build" / "bench", "token-throughput") as server,
            tempfile.TemporaryDirectory(prefix="token-throughput-") as tmp,
            httpx.Client(base_url=server.base_url, timeout=30) as http,
        ):
            users: list[tuple[str, str]] = []
            for n in range(args.users):
                email, password = f"tp-{n}-{uuid.uuid4().hex[:6]}@example.com", "throughput-pw-1"
                created = http.post("/api/v1/users", json={"email": email, "password": password})
                login = http.post(
                    "/api/v1/auth/token", data={"username": email, "password": password}
                )
                users.append((created.json()["id"], login.json()["access_token"]))
            for user_id, token in users:  # warm the cache
                assert http.get(
                    f"/api/v1/users/{user_id}", headers={"Authorization": f"Bearer {token}"}
                ).is_success
            work = Path(tmp)
            reads = [f"GET\t/api/v1/users/{uid}\tBearer {token}\t" for uid, token in users]
            basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            sample = http.post(
                "/api/v1/auth/introspect",
                data={"token": users[0][1]},
                headers={"Authorization": basic},
            )
            assert sample.json()["active"] is True, sample.text  # the row measures real work
            introspections = [
                f"POST\t/api/v1/auth/introspect\t{basic}\ttoken={token}" for _, token in users
            ]
            cached = _wrk(server.base_url, reads, args.seconds, args.connections, work)
            introspect = _wrk(server.base_url, introspections, args.seconds, args.connections, work)
            offline, count = _offline(server.base_url, [t for _, t in users], args.seconds)
    print()
    print(f"{'row':58} {'per second':>12} {'vs cached GET':>14}")
    print(f"{'GET /api/v1/users/{id}, cached (2 workers, wrk)':58} {cached:12.0f} {1.0:14.2f}")
    print(
        f"{'POST /api/v1/auth/introspect (2 workers, wrk)':58} {introspect:12.0f} "
        f"{introspect / cached:14.2f}"
    )
    print(
        f"{'offline verification, PyJWKClient + jwt.decode (1 core)':58} {offline:12.0f} "
        f"{offline / cached:14.2f}"
    )
    print(f"({count} tokens verified offline; EdDSA; per CPU-second of the consumer process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
