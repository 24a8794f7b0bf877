# Container image of user-service: wheels and a venv built in one stage, copied into a slim runtime stage.
#
# Every stage starts from BASE_IMAGE so the same file builds on the published Python image (the default,
# pinned by tag and digest) or on any Debian-like base that provides python3 with the venv module,
# e.g. the local base scripts/image.sh makes. Refresh the digest with
# `docker buildx imagetools inspect python:3.11-slim-bookworm` when moving the pin.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

FROM ${BASE_IMAGE} AS builder

# No pip cache (nothing to keep between stages anyway) and no .pyc from build-time tools.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# The Python in the venv is whatever the base provides; the runtime stage has the same one at the same path.
RUN python3 -m venv /opt/venv

# Dependencies before sources: this layer is rebuilt only when the lock changes. The lock
# (scripts/lock.sh) pins every package, transitive ones included, with the hashes of its files:
# pip refuses anything else. Runtime only: no test tools, no embedded SQLite or in-process Redis.
# Every locked package ships a wheel for CPython 3.11 on linux, so no compiler is needed either.
COPY scripts/requirements/runtime.txt ./requirements.txt
RUN /opt/venv/bin/pip install --require-hashes --only-binary :all: -r requirements.txt

# The project itself, as a wheel built by its own backend (setuptools, from [build-system]).
COPY README.md ./
COPY app/ app/
COPY pyproject.toml ./
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-index --no-deps /wheels/user_service-*.whl \
    # Nothing at run time installs packages: drop the installers, after proving the set is consistent.
    && /opt/venv/bin/pip uninstall --yes setuptools \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall --yes pip


FROM ${BASE_IMAGE} AS runtime

# A named, numeric user: Pod Security's runAsNonRoot can only verify a numeric USER, and the passwd entry
# keeps libraries that look up the current user happy. /run/prometheus is where the chart mounts the
# multiprocess emptyDir; it exists (owned by the app) so the image also runs without that mount.
# --no-log-init: a high UID would otherwise grow a large sparse /var/log/lastlog and faillog.
RUN groupadd --gid 10001 app \
    && useradd --no-log-init --uid 10001 --gid app --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0750 /run/prometheus

# jemalloc, the allocator every process of the image runs on (LD_PRELOAD below). Each password hash
# takes ARGON2_MEMORY_KIB (64 MiB) in a hashing thread of the worker. glibc's malloc maps such a block
# afresh and unmaps it after every hash, in the address space the worker's event loop shares, and that
# slowed the loop: in `make bench`, reads beside a login storm had a p99 1.5 to 1.6 times their p99
# alone. jemalloc keeps the address range and hands its pages back to the kernel instead (0.78 to 1.26
# times in four runs; the workers' RSS is back at its idle size a second after the storm).
# Pinned to the version of the base's Debian release (bookworm); no apt lists or caches are kept.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libjemalloc2=5.3.0-1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# The venv only: no wheels, pip, compilers or build caches reach this stage.
COPY --from=builder /opt/venv /opt/venv

# gunicorn.conf.py, alembic.ini and migrations/ are read relative to the working directory.
# Owned by root and not writable by the app: the code cannot be changed by the process that runs it.
WORKDIR /app
COPY gunicorn.conf.py alembic.ini ./
COPY migrations/ migrations/

# Build metadata last: a new revision then only re-runs these metadata steps, not the layers above.
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
# Where the source lives; CI passes its repository URL (left empty rather than guessed).
ARG SOURCE_URL=""

LABEL org.opencontainers.image.title="user-service" \
      org.opencontainers.image.description="Users and authentication microservice (FastAPI, PostgreSQL, Redis)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}"

# The root filesystem is read-only in the cluster: never try to write .pyc files (the venv's were compiled
# at install time); only /tmp and /run/prometheus are writable (emptyDirs). LD_PRELOAD names the allocator
# by its soname, which the loader finds on any architecture; a pod's env can set it empty to run on glibc's.
ENV PATH="/opt/venv/bin:${PATH}" \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/run/prometheus \
    SERVICE_VERSION="${VERSION}" \
    GIT_COMMIT="${REVISION}" \
    LD_PRELOAD=libjemalloc.so.2

USER 10001:10001
# 8000: the API (BIND); 9464: /metrics only (METRICS_PORT).
EXPOSE 8000 9464
# gunicorn (PID 1 after `user-service serve` execs it) drains workers gracefully on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["user-service"]
CMD ["serve"]
