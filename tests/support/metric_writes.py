"""Counts the writes that cached reads make into the metrics' memory-mapped files.

Run as a program in multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before anything imports
prometheus_client, with DATABASE_URL and REDIS_URL of the test's own): it serves one user's
cached GET /api/v1/users/{id} over ASGI, counts every MmapedDict.write_value by the thread
that made it, then renders a scrape and prints a JSON summary on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from typing import Any

from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from app.observability.http_metrics import metrics_text
from app.settings import Settings
from tests.support.app_harness import start_harness

HANDLER = "/api/v1/users/{user_id}"


def _sample(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def measure(requests: int) -> dict[str, Any]:
    writes: list[tuple[str, str]] = []
    original = MmapedDict.write_value

    def counting(self: MmapedDict, key: str, value: float, timestamp: float) -> None:
        writes.append((threading.current_thread().name, key))
        original(self, key, value, timestamp)

    harness, stop = await start_harness(Settings())
    try:
        client = harness.client
        user, headers = await harness.user_with_token(f"writes-{uuid.uuid4().hex[:8]}@example.com")
        url = f"/api/v1/users/{user['id']}"
        (await client.get(url, headers=headers)).raise_for_status()  # fills the cache
        started = time.monotonic()
        MmapedDict.write_value = counting  # type: ignore[method-assign]
        try:
            for _ in range(requests):
                (await client.get(url, headers=headers)).raise_for_status()
        finally:
            MmapedDict.write_value = original  # type: ignore[method-assign]
        elapsed = time.monotonic() - started
        text = metrics_text().decode()
    finally:
        await stop()
    serving = threading.current_thread().name
    return {
        "requests": requests,
        "seconds": elapsed,
        "request_writes": sum(1 for thread, _ in writes if thread == serving),
        "flush_writes": sum(1 for thread, _ in writes if thread != serving),
        "keys_written": len({key for _, key in writes}),
        "counted": _sample(text, "http_requests_total", method="GET", handler=HANDLER),
        "hits": _sample(text, "user_service_cache_requests_total", result="hit"),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(int(sys.argv[1])))))
