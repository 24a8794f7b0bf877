#!/usr/bin/env bash
# The long schemathesis run against the real service (PostgreSQL + Redis must be up).
#
#   scripts/fuzz.sh                     500 examples per operation, random seed, <= 30 min
#   FUZZ_EXAMPLES=2000 FUZZ_SEED=7 FUZZ_MAX_TIME=3600 scripts/fuzz.sh
#
# It starts `user-service serve` (gunicorn, 2 workers) on a free 127.0.0.1 port with its own
# database (user_service_sec_fuzz) and Redis DB 6 (SECURITY_REDIS_URL overrides), signs in
# as an admin, and runs `st run` from /openapi.json with the checks: not_a_server_error,
# status_code/content_type/response_headers/response_schema conformance. The seed is
# printed: re-run a failure with FUZZ_SEED=<seed>. JUnit and HAR reports land in
# reports/fuzz/ (FUZZ_REPORT_DIR). Exit status: schemathesis's (0 = nothing found).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
seed="${FUZZ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
exec "$PYTHON" -m tests.security.fuzz \
  --max-examples "${FUZZ_EXAMPLES:-500}" \
  --seed "$seed" \
  --max-time "${FUZZ_MAX_TIME:-1800}" \
  --report-dir "${FUZZ_REPORT_DIR:-reports/fuzz}"
