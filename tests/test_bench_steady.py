"""The fixed-cost server that the latency runs compare the service with
(scripts/bench/steady): each request costs the CPU work it asks for, and a bad request is
refused by naming its parameter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.bench.counters import cpu_us_per_request
from scripts.bench.load import Load
from scripts.bench.stack import Server, steady_server


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    build: Path = tmp_path_factory.mktemp("steady")
    with steady_server(build, build / "logs") as server:
        yield server


def _cpu_us_per_request(server: Server, work_us: int, count: int) -> float:
    def send() -> Load:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            for _ in range(count):
                answer = client.get("/", params={"work_us": work_us})
                assert (answer.status_code, answer.text) == (200, "ok\n")
        return Load(requests=count, seconds=0.0, p50_ms=0.0, p99_ms=0.0, errors=0)

    _, cpu_us = cpu_us_per_request([server.process.pid], send)
    return cpu_us


def test_each_request_costs_the_cpu_work_it_asks_for(steady: Server) -> None:
    # The process's own CPU time, in ticks of 10 ms: 100 requests of 5 ms each is 50 ticks.
    idle = _cpu_us_per_request(steady, 0, 100)
    busy = _cpu_us_per_request(steady, 5000, 100)
    assert idle < 1000
    # The work is calibrated on the fastest of its timed runs at start-up: a machine that
    # takes the CPU away meanwhile can only make a request cost more, never less.
    assert 0.8 * 5000 <= busy - idle <= 2 * 5000


@pytest.mark.parametrize("work_us", ["", "many", "-1", "1e7"])
def test_a_bad_work_amount_is_refused_by_name(steady: Server, work_us: str) -> None:
    answer = httpx.get(steady.base_url, params={"work_us": work_us}, timeout=10)
    assert answer.status_code == 400
    assert answer.text.startswith("work_us: ")
