"""The compared rows' order in each pass, and a goal ratio read from the passes in pairs.

A row's place in a pass costs it: it follows a different row each time, and the machine
drifts within a pass. Run with the same order in every pass, the all-on read always came
right after the heaviest PostgreSQL row and always before the instrumentation-off row, and
swapping the two alone moved the on / off ratio by eight points. So the passes alternate:
the given order, then the same reversed. Over each pair of passes every row has the same
mean place, and of any two rows each comes first once, so a cost of going first or of drift
within the pass falls on both alike.

Each burst also follows a second of unmeasured load on its own server (--lead-in): what the
row before it left behind (PostgreSQL finishing the heavy rows' work, the caches full of
another server's data) falls on that second instead. In one run each on a shared machine,
two servers of identical code measured side by side came out 1.15 apart without it and 1.04
with it."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from statistics import median
from typing import TypeVar

T = TypeVar("T")


def pass_order(rows: Sequence[T], number: int) -> list[T]:
    """The rows in the order pass `number` (from 0) runs them: even passes as given, odd
    passes reversed."""
    return list(rows) if number % 2 == 0 else list(reversed(rows))


def paired_ratio(top: Sequence[float], bottom: Sequence[float]) -> float:
    """top / bottom from figures measured pass by pass: for each pair of passes (0 and 1,
    2 and 3, ...), one in each order, the geometric mean of its two passes' ratios, then the
    median over the pairs. The pair cancels the order; the median drops a pair the machine
    disturbed."""
    if len(top) != len(bottom) or not top or len(top) % 2:
        raise ValueError(
            f"a paired ratio needs the same even number of passes on both sides, "
            f"not {len(top)} and {len(bottom)}"
        )
    ratios = [upper / lower for upper, lower in zip(top, bottom, strict=True)]
    return median(
        math.sqrt(first * second) for first, second in zip(ratios[::2], ratios[1::2], strict=True)
    )


def lead_in_seconds(text: str) -> int:
    """The --lead-in argument: whole seconds, 0 or more."""
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lead-in must be whole seconds, not {text!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"--lead-in must be 0 or more seconds, not {seconds}")
    return seconds


def even_passes(text: str) -> int:
    """The --passes argument: a positive even number, so that every pass has its reverse."""
    try:
        passes = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--passes must be a whole number, not {text!r}") from None
    if passes < 2 or passes % 2:
        raise argparse.ArgumentTypeError(
            f"--passes must be even and at least 2 (each pass runs the rows in one order and "
            f"the next in the reverse), not {passes}"
        )
    return passes
