"""The benchmark's stall meter: what it counts from a clock, and that it sees a CPU taken away."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable

from scripts.bench import cores
from scripts.bench.stalls import Stalls, measure, spin, typical


def _clock(jumps: dict[int, int]) -> Callable[[], int]:
    """A clock that moves 100 ns between readings, and by `jumps[n]` before the n-th."""
    readings = itertools.count()
    now = 0

    def read() -> int:
        nonlocal now
        now += jumps.get(next(readings), 100)
        return now

    return read


def test_gaps_are_counted_by_length() -> None:
    """Loop turns are not gaps; from 100 us a gap is time lost, from 1 ms also a stall."""
    found = spin(0.01, _clock({10: 2_000_000, 20: 200_000, 30: 99_999, 40: 50_000}))
    assert found.count == 1
    assert found.longest_ms == 2.0
    assert found.lost_ms == 2.2
    assert 0.01 <= found.seconds < 0.0101


def test_a_cpu_shared_with_a_busy_process_shows_as_lost_time() -> None:
    """A spinning process on the same CPU takes about half its time, in scheduler slices:
    the meter must see that as time lost, in gaps of a slice's length."""
    cpu = min(cores.available())
    spin_forever = [sys.executable, "-c", "while True: pass"]
    rival = subprocess.Popen([*cores.on(frozenset({cpu})), *spin_forever])
    try:
        found = measure(frozenset({cpu}), 1.0)[cpu]
    finally:
        rival.kill()
        rival.wait()
    assert found.seconds >= 1.0
    assert found.lost_ms / 1000 / found.seconds > 0.25, found
    assert found.longest_ms >= 0.5, found


def test_the_typical_measurement_has_the_median_rate() -> None:
    calm, usual, busy = (Stalls(2.0, count, 1.0, 10.0) for count in (1, 4, 20))
    assert typical([busy, calm, usual]) is usual
    assert typical([busy, calm]) is busy  # of two, the higher, as the tail verdict takes
