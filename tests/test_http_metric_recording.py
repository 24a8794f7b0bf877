"""A request's http_* samples, added under one lock into the worker's buffered values, scrape
exactly as prometheus_client's own metric methods would have made them: same series, labels,
buckets and numbers, read back by its multiprocess collector from the real files. The
buffered recording reads prometheus_client's value attributes; these tests fail if the
pinned version stops having them (the service would fall back to the slower public API)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.database import fresh_database
from tests.support.isolation import redis_url
from tests.support.service import REPO


def _scrape(directory: Path, recording: str, what: str, **env: str) -> tuple[str, bool]:
    directory.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.http_metric_scrape", recording, what],
        cwd=REPO,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    *lines, summary = done.stdout.splitlines()
    scraped = [line for line in lines if not line.startswith("{")]  # not the service's logs
    return _by_family(scraped), bool(json.loads(summary)["buffered"])


def _by_family(lines: list[str]) -> str:
    """The scrape with its families in name order: the multiprocess collector reads the
    worker files in directory order, so two directories may list the same families in a
    different order (Prometheus does not care); within a family the order is kept."""
    families: list[list[str]] = []
    for line in lines:
        if line.startswith("# HELP") or not families:
            families.append([])
        families[-1].append(line + "\n")
    return "".join("".join(family) for family in sorted(families))


def test_recorded_requests_scrape_as_the_public_api_records_them(tmp_path: Path) -> None:
    public, public_buffered = _scrape(tmp_path / "public", "public", "direct")
    buffered, in_use = _scrape(tmp_path / "buffered", "buffered", "direct")
    assert in_use and not public_buffered
    assert buffered == public
    # Not two empty scrapes: every class of status and the +Inf bucket are there.
    for line in (
        'http_requests_total{handler="/api/v1/users/{user_id}",method="GET",status="2xx"}',
        'http_requests_total{handler="/api/v1/x",method="PATCH",status="6xx"}',
        'http_requests_total{handler="/api/v1/users/{user_id}",method="GET",status="0xx"}',
        'http_request_duration_highr_seconds_bucket{le="+Inf"}',
        'http_requests_inprogress{handler="/api/v1/users/{user_id}",method="GET"} 1.0',
        'http_request_size_bytes_sum{handler="/api/v1/x"}',
    ):
        assert line in buffered, line


def _without_token_bytes(text: str) -> str:
    """The login answer's length is its tokens' (random ids, times), so differs run to run."""
    varying = 'http_response_size_bytes_sum{handler="/api/v1/auth/token"}'
    lines = text.splitlines(keepends=True)
    assert sum(line.startswith(varying) for line in lines) == 1
    return "".join(varying + " -\n" if line.startswith(varying) else line for line in lines)


def test_the_service_scrape_is_the_same_with_either_recording(tmp_path: Path) -> None:
    def env() -> dict[str, str]:
        return {
            "APP_ENV": "test",
            "DATABASE_URL": fresh_database("user_service_http_metric_scrape"),
            "REDIS_URL": redis_url(6),
            "CACHE_KEY_PREFIX": f"scrape{uuid.uuid4().hex[:8]}",
            "ARGON2_MEMORY_KIB": "8192",
            "ARGON2_TIME_COST": "1",
            "OTEL_SDK_DISABLED": "true",
        }

    public, _ = _scrape(tmp_path / "public", "public", "app", **env())
    buffered, in_use = _scrape(tmp_path / "buffered", "buffered", "app", **env())
    assert in_use
    assert _without_token_bytes(buffered) == _without_token_bytes(public)
    assert (
        'http_requests_total{handler="/api/v1/users/{user_id}",method="GET",status="2xx"} 25.0'
        in buffered
    )
    assert 'user_service_cache_requests_total{cache="user",result="hit"}' in buffered


def test_the_recording_benchmark_prints_both_ways() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.bench.metric_recording", "1"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if "us/request" in line]
    assert [row[0] for row in rows] == ["service", "metric"], done.stdout
    assert all(float(row[row.index("min") + 1]) > 0 for row in rows), done.stdout
