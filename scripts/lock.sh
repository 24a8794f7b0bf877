#!/usr/bin/env bash
# Regenerates the lock files in scripts/requirements/ from the exact pins in pyproject.toml: every
# package, transitive ones included, pinned with the hashes of its published files.
#   scripts/requirements/runtime.txt   the service (the image, and `make run` with PostgreSQL/Redis)
#   scripts/requirements/embedded.txt  + SQLite and the in-process Redis (`make run` without them)
#   scripts/requirements/dev.txt       + every extra (tests, lint, load tests, deploy checks, ...)
#   scripts/requirements/loadtest.txt  the load-test image (loadtests/Dockerfile): what the gate
#                                      imports
# Every package a lock shares with dev.txt is at dev.txt's version.
# Run it (`make lock`) after changing a dependency in pyproject.toml and commit the result;
# tests/test_lock.py fails while a pin in pyproject.toml and the lock disagree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/setup.sh
source scripts/lib/setup.sh

# The resolver is pinned too (scripts/requirements/uv.txt, with its hashes), so every lock is
# made alike; `UV_VERSION=x.y.z make lock` moves it, resolved by the uv pinned before.
ensure_uv
if [ -n "${UV_VERSION:-}" ]; then
  echo "uv==$UV_VERSION" | "$UV" pip compile - --quiet --universal --python-version 3.11 \
    --generate-hashes --custom-compile-command "make lock" --output-file scripts/requirements/uv.txt
  ensure_uv
fi

compile() {  # name, source (pyproject.toml, or - for stdin), uv options...
  local name=$1
  shift
  # --universal: one lock for every platform and Python >= 3.11 (markers where they differ).
  "$UV" pip compile "$@" --quiet --universal --python-version 3.11 \
    --generate-hashes --custom-compile-command "make lock" \
    --output-file "scripts/requirements/$name.txt"
  log "scripts/requirements/$name.txt: $(grep -c '^[a-z0-9]' "scripts/requirements/$name.txt") packages"
}

mkdir -p scripts/requirements
compile dev pyproject.toml --all-extras
# The other locks hold every package they share with dev.txt at its version, so the image,
# `make run` and the load-test image run exactly what the tests ran.
compile runtime pyproject.toml --constraint scripts/requirements/dev.txt
compile embedded pyproject.toml --extra embedded --constraint scripts/requirements/dev.txt
# The load-test image: the gate's packages at pyproject.toml's pins and what they pull in.
"$PYTHON" - locust prometheus-client matplotlib <<'PY' | compile loadtest - --constraint scripts/requirements/dev.txt
import sys, tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
requirements = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
pins = {r.split("==")[0]: r for r in requirements if "==" in r}
print("\n".join(pins[name] for name in sys.argv[1:]))
PY
