"""The benchmark's servers run on the allocator the image preloads, the bare baselines too:
the bench measures what the image runs, and both sides of every ratio share the allocator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts.bench import stack
from scripts.bench.stack import ALLOCATOR, Server, baselines, database, redis_server, service

REPO = Path(__file__).resolve().parents[1]


def _mapped_allocators(server: Server) -> dict[int, list[str]]:
    """For gunicorn's master and each worker, the file names of the mapped jemalloc objects."""
    found = {}
    for pid in [server.process.pid, *server.worker_pids()]:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        found[pid] = sorted(
            {line.split()[-1].rsplit("/", 1)[-1] for line in maps if "jemalloc" in line}
        )
    return found


def test_the_bench_preloads_what_the_image_preloads() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    preloaded = re.findall(r"^\s+LD_PRELOAD=(\S+?)\s*\\?$", dockerfile, flags=re.MULTILINE)
    assert preloaded == [ALLOCATOR]


def test_service_and_baseline_workers_run_on_the_allocator(tmp_path: Path) -> None:
    with redis_server() as redis_url, database() as database_url:
        env = {
            "APP_ENV": "test",
            "WEB_CONCURRENCY": "2",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "JWT_SECRET_KEY": "benchmark-signing-key-of-at-least-32-bytes",
        }
        with service(env, tmp_path, "service") as served, baselines(env, tmp_path) as bare:
            for server in (served, bare):
                found = _mapped_allocators(server)
                assert len(found) == 3, found  # the master and its 2 workers
                assert all(names == [ALLOCATOR] for names in found.values()), found


def test_a_missing_allocator_is_named_not_silently_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The loader only warns about a preload it cannot find and runs on glibc's malloc.
    monkeypatch.setattr(stack, "ALLOCATOR", "libnot-an-allocator.so.9")
    with pytest.raises(RuntimeError, match=r"libnot-an-allocator\.so\.9 not found"):
        stack.preloaded_allocator()
