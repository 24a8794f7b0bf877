"""The life of a pod, run from rendered objects: the migration Job's command, then the app
container probed as the kubelet probes it, then stopped as the kubelet stops it. Any
Launcher runs it (LocalLauncher here; an image launcher runs the same checks in a container).

    objects = helm.template(value_files("defaults"), run_values(prepare_local_backends(), ...))
    app = run_release(objects, LocalLauncher())
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from loadtests.local_service import free_port
from tests.support.database import empty_database
from tests.support.isolation import redis_url

from .chart import one
from .rendered import (
    Launcher,
    Probe,
    ProbeFailedError,
    Process,
    container_spec,
    http_get,
    probe_until,
    run_to_completion,
    started,
)

# The local servers are shared: our own database, our own Redis DB number.
DATABASE = "user_service_deploy_test"
REDIS_URL = redis_url(3)
# What the downward API would give the pod.
DOWNWARD = {
    "metadata.name": "user-service-7d9c-abcde",
    "metadata.namespace": "users",
    "spec.nodeName": "node-1",
}


def prepare_local_backends() -> str:
    """A fresh, empty database (the migration Job creates the schema) and an empty Redis DB;
    returns the DATABASE_URL."""
    return empty_database(DATABASE, REDIS_URL)


def run_values(
    database_url: str, redis_url: str, port: int, metrics_port: int | None = None
) -> dict[str, str]:
    """Chart values for a run on this machine: render inputs, so the env stays the rendered
    one. The pool is small because the local PostgreSQL is shared (max_connections=100), and
    both ports are free ones, as other runs share the machine."""
    return {
        "postgres.url": database_url,
        "redis.url": redis_url,
        "containerPort": str(port),
        "metrics.port": str(metrics_port or free_port()),
        "config.DB_POOL_SIZE": "2",
        "config.DB_MAX_OVERFLOW": "1",
        "config.WEB_CONCURRENCY": "2",
    }


def signup(base: str, timeout: float = 20) -> int:
    body = json.dumps(
        {
            "email": f"deploy-{uuid.uuid4().hex[:12]}@example.com",
            "password": "correct horse battery staple",
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/api/v1/users",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def run_release(
    objects: list[dict[str, Any]],
    launcher: Launcher,
    downward: dict[str, str] = DOWNWARD,
    overrides: dict[str, str] | None = None,
) -> Process:
    """Migrate, start, probe, use, terminate; raises AssertionError at the first mismatch and
    returns the (exited) app process for launcher-specific checks."""
    # 1. The migration Job, first, as the pre-install hook runs it.
    job = one(objects, "Job", "migrations")
    migrate = container_spec(objects, job, downward=downward)
    code, proc = run_to_completion(
        launcher, migrate, overrides or {}, job["spec"]["activeDeadlineSeconds"]
    )
    assert code == 0, f"migration Job command {migrate.argv} exited {code}\n{proc.log_tail()}"

    # 2. The Deployment's container with exactly the rendered env.
    deployment = one(objects, "Deployment")
    spec = container_spec(objects, deployment, downward=downward)
    with started(launcher, spec, overrides or {}) as app:
        started_at = time.monotonic()
        probe_until(app, spec.probes["startup"])
        # Liveness and readiness start once the startup probe has passed.
        probe_until(app, spec.probes["liveness"])
        ready = probe_until(app, spec.probes["readiness"])
        body = json.loads(ready[-1].body)
        assert body["status"] == "ok", body
        assert body["checks"]["database"] == "up" and body["checks"]["schema"] == "current", body
        assert body["checks"]["redis"] == "up", body
        startup_budget = spec.probes["startup"].period * spec.probes["startup"].failure_threshold
        assert time.monotonic() - started_at < startup_budget

        # The harness itself fails on a path the app does not serve (what a chart typo would do).
        wrong = Probe(
            "readiness",
            "/healthz",
            spec.probes["readiness"].port,
            period=0.1,
            timeout=1,
            failure_threshold=2,
        )
        try:
            probe_until(app, wrong)
        except ProbeFailedError:
            pass
        else:
            raise AssertionError("a probe on a path the app does not serve passed")

        base = app.url(spec.ports["http"], "")
        assert signup(base) == 201, app.log_tail()
        metrics = http_get(app.url(spec.ports["metrics"], "/metrics"), 5)
        assert metrics.status == 200 and "user_service_build_info" in metrics.body
        assert http_get(app.url(spec.ports["http"], "/metrics"), 5).status == 404

        # 3. Termination: preStop sleep, then SIGTERM, as the kubelet does.
        terminating_at = time.monotonic()
        time.sleep(spec.pre_stop_seconds)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            in_flight = [pool.submit(signup, base) for _ in range(8)]
            time.sleep(0.05)  # let them reach the workers (Argon2 keeps them busy)
            app.terminate()
            readiness_seen: list[int | None] = []
            readiness = spec.probes["readiness"]
            while (
                app.poll() is None
                and time.monotonic() - terminating_at < spec.termination_grace_seconds
            ):
                result = http_get(app.url(readiness.port, readiness.path), readiness.timeout)
                readiness_seen.append(result.status)
                if result.status is None:
                    break  # listener closed: draining is over
                time.sleep(0.1)
            statuses = [f.result() for f in in_flight]

        remaining = spec.termination_grace_seconds - (time.monotonic() - terminating_at)
        code = app.wait(max(0.0, remaining))
        elapsed = time.monotonic() - terminating_at
        assert code is not None, (
            f"still running {elapsed:.1f}s after termination began "
            f"(terminationGracePeriodSeconds={spec.termination_grace_seconds}): "
            "the kubelet would SIGKILL it\n"
            f"{app.log_tail()}"
        )
        assert code == 0, f"exit status {code}\n{app.log_tail()}"
        assert 503 in readiness_seen, (
            f"/readyz never answered 503 while draining (saw {readiness_seen})\n{app.log_tail()}"
        )
        assert statuses == [201] * len(statuses), f"in-flight requests after SIGTERM: {statuses}"
        return app
