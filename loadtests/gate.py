"""The release gate: a fixed Locust run judged against versioned thresholds; exit 1 on any miss.

    python -m loadtests.gate --host http://127.0.0.1:8000 --users 20 --spawn-rate 10 \\
        --duration 60s --thresholds loadtests/thresholds.toml --out build/loadtest

Without --host it starts the service itself on 127.0.0.1 (fresh database, gunicorn, the
load-test settings in loadtests/local_service.py) and stops it afterwards.

Distributed: --processes N forks N Locust workers on this machine (one process does about
2,000 requests a second per core); --expect-workers N makes this a master that waits for N
workers started elsewhere (`locust -f loadtests/locustfile.py --worker --master-host ...`,
the chart's worker pods). Either way the verdict is taken from the master's aggregated stats.

Exit codes: 0 every threshold passed, 1 at least one failed (summary.md says which and by
how much), 2 the run could not be made (service unreachable, Locust crashed, bad file).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loadtests import local_service, promscrape, seed
from loadtests.evaluate import evaluate
from loadtests.html_report import write_html
from loadtests.offered import OfferedLoad, parse_duration
from loadtests.report import checks_table, verdict, write_summary
from loadtests.runner import RunError, Scenario, measure
from loadtests.thresholds import ThresholdsError, load_thresholds

LOCAL_DATABASE = "user_service_load_gate"
LOCAL_ADMIN = "loadtest-admin@example.com"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.gate", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--host", help="service base URL; omitted: start one locally")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--spawn-rate", type=float, default=10.0)
    p.add_argument("--duration", default="60s", help="Locust run time (30s, 2m, ...)")
    p.add_argument("--thresholds", type=Path, default=Path("loadtests/thresholds.toml"))
    p.add_argument("--out", type=Path, default=Path("build/loadtest"))
    p.add_argument("--seed-users", type=int, default=200, help="accounts signed up before the run")
    p.add_argument("--seed-file", type=Path, help="reuse a seed file instead of seeding")
    p.add_argument("--hot", type=int, default=10, help="size of the hot read set")
    p.add_argument("--hot-share", type=float, default=0.8, help="share of reads on the hot set")
    p.add_argument("--wait-min", type=float, default=0.1, help="think time, seconds")
    p.add_argument("--wait-max", type=float, default=0.5)
    p.add_argument(
        "--admin-email",
        default=os.environ.get("LOADTEST_ADMIN_EMAIL"),
        help="admin account for the list journey (password: LOADTEST_ADMIN_PASSWORD)",
    )
    p.add_argument(
        "--metrics-url",
        action="append",
        default=[],
        metavar="URL",
        help="scrape /metrics here instead of --host (repeatable: one per pod)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=promscrape.DEFAULT_METRICS_PORT,
        help="the service's METRICS_PORT, scraped on --host's address when no --metrics-url",
    )
    p.add_argument(
        "--metrics-dns",
        metavar="HOST:PORT",
        help="scrape every address HOST resolves to (a headless Service: all pods)",
    )
    dist = p.add_argument_group("distributed Locust")
    dist.add_argument(
        "--processes", type=int, default=0, help="Locust worker processes on this machine"
    )
    dist.add_argument(
        "--expect-workers", type=int, default=0, help="be a master; wait for N remote workers"
    )
    dist.add_argument("--master-bind-port", type=int, default=5557)
    dist.add_argument(
        "--worker-counts-dir", type=Path, help="each worker writes its request count here"
    )
    local = p.add_argument_group("local service (only without --host)")
    local.add_argument("--workers", type=int, default=2)
    local.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    local.add_argument("--database", default=LOCAL_DATABASE)
    local.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the local service (repeatable)",
    )
    local.add_argument(
        "--full-argon2",
        action="store_true",
        help="keep production Argon2 cost (default: cheaper, see README)",
    )
    return p.parse_args(argv)


@contextmanager
def _target(
    args: argparse.Namespace,
) -> Iterator[tuple[str, dict[str, Any], str | None, str | None, str]]:
    """Yield (host, what-was-started, admin email, admin password, where its metrics are)."""
    admin_email = args.admin_email
    admin_password = os.environ.get("LOADTEST_ADMIN_PASSWORD")
    if args.host:
        metrics = promscrape.metrics_base(args.host, args.metrics_port)
        yield args.host, {"host": args.host}, admin_email, admin_password, metrics
        return
    url = local_service.fresh_database(args.database)
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": args.redis_url,
        "WEB_CONCURRENCY": str(args.workers),
        **({} if args.full_argon2 else local_service.CHEAP_ARGON2_ENV),
    }
    for item in args.service_env:
        key, _, value = item.partition("=")
        env[key] = value
    admin_email = admin_email or LOCAL_ADMIN
    admin_password = admin_password or secrets.token_urlsafe(16)
    seed.create_admin(admin_email, admin_password, {"DATABASE_URL": url, "APP_ENV": "test"})
    with local_service.running(env, args.out) as service:
        shown = {
            k: v for k, v in {**local_service.LOAD_TEST_ENV, **env}.items() if k != "DATABASE_URL"
        }
        yield (
            service.base_url,
            {"host": f"{service.base_url} (started locally)", **shown},
            admin_email,
            admin_password,
            service.metrics_base_url,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    local_service.install_stop_handlers()
    try:
        thresholds = load_thresholds(args.thresholds)
    except (OSError, ThresholdsError) as exc:
        print(f"gate: thresholds: {exc}", file=sys.stderr)
        return 2
    scenario = Scenario(
        users=args.users,
        spawn_rate=args.spawn_rate,
        duration=args.duration,
        seed_users=args.seed_users,
        hot=args.hot,
        wait_min=args.wait_min,
        wait_max=args.wait_max,
        hot_share=args.hot_share,
        processes=args.processes,
        expect_workers=args.expect_workers,
        master_bind_port=args.master_bind_port,
        worker_counts_dir=args.worker_counts_dir,
    )
    try:
        offered = OfferedLoad(
            users=args.users,
            spawn_rate=args.spawn_rate,
            duration_s=parse_duration(args.duration),
            wait_min_s=args.wait_min,
            wait_max_s=args.wait_max,
        )
    except ValueError as exc:
        print(f"gate: --duration: {exc}", file=sys.stderr)
        return 2
    try:
        metrics_urls = list(args.metrics_url)
        if args.metrics_dns:
            metrics_urls += promscrape.pod_urls(args.metrics_dns)
        with _target(args) as (host, started, admin_email, admin_password, metrics):
            metrics_urls = metrics_urls or [metrics]
            result = measure(
                host,
                scenario,
                args.out,
                seed_file=args.seed_file,
                admin_email=admin_email,
                admin_password=admin_password,
                metrics_urls=metrics_urls or None,
            )
        if metrics_urls:
            started = {**started, "metrics from": ", ".join(metrics_urls)}
    except (RunError, seed.SeedError, OSError, ValueError) as exc:
        print(f"gate: run failed: {exc}", file=sys.stderr)
        return 2
    checks = evaluate(thresholds, result.stats, result.metrics, offered)
    load_after = os.getloadavg()
    meta = {
        **started,
        "users": args.users,
        "spawn rate": args.spawn_rate,
        "duration": args.duration,
        "think time": f"{args.wait_min}-{args.wait_max}s",
        "offered load": offered.describe(),
        "load generator": (
            f"Locust master + {args.expect_workers} remote workers"
            if args.expect_workers
            else f"Locust master + {args.processes} local worker processes"
            if args.processes
            else "one Locust process"
        ),
        "thresholds": f"{args.thresholds} (version {thresholds.version})",
        # Latency on a shared machine says as much about the neighbours as about the service.
        "load average of this machine (1/5/15 min) at the end": " / ".join(
            f"{v:.2f}" for v in load_after
        ),
    }
    summary = write_summary(args.out, checks, result.stats, result.metrics, meta)
    report = write_html(
        args.out,
        checks=checks,
        stats=result.stats,
        metrics=result.metrics,
        meta=meta,
        offered=offered,
    )
    passed = verdict(checks)
    print(checks_table(checks))
    print(f"\n{'PASS' if passed else 'FAIL'}: summary {summary}, report {report}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
