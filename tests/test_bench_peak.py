"""The benchmark's search for the highest constant rate the service keeps up with: each step
offered for a few seconds, a step that falls behind offered once more before the search stops.
The probes here are answers written down, as the search only reads them."""

from __future__ import annotations

from collections.abc import Iterator

from scripts.bench.load import Load, highest_kept_rate


class _Answers:
    """A probe giving `loads` in turn and remembering the rates it was offered."""

    def __init__(self, *loads: Load) -> None:
        self._pending: Iterator[Load] = iter(loads)
        self.offered: list[int] = []

    def __call__(self, rate: int) -> Load:
        self.offered.append(rate)
        return next(self._pending)


def _kept(rate: int, p50_ms: float = 0.6) -> Load:
    return Load(rate * 4, 4.0, p50_ms, 2.0, 0, float(rate))


def test_a_step_that_falls_behind_once_is_offered_again() -> None:
    probe = _Answers(
        _kept(100),
        _kept(200, p50_ms=4.0),  # a neighbour's burst: p50 over three times the idle step's
        _kept(200),
        _kept(300),
        _kept(400, p50_ms=2.5),  # the knee: behind twice
        _kept(400, p50_ms=2.6),
    )
    rate, tried = highest_kept_rate(1000, probe)
    assert rate == 300
    assert probe.offered == [100, 200, 200, 300, 400, 400]
    assert [line.endswith("(falls behind)") for line in tried] == [
        False,
        True,
        False,
        False,
        True,
        True,
    ]


def test_errors_or_unserved_requests_fall_behind_too() -> None:
    errors = Load(800, 4.0, 0.6, 2.0, 3, 200.0)
    slow = Load(800, 4.0, 0.6, 2.0, 0, 150.0)
    probe = _Answers(_kept(100), errors, slow)
    assert highest_kept_rate(1000, probe)[0] == 100


def test_the_first_step_is_not_offered_again() -> None:
    """It sets the idle latency the others are held to: if even it falls behind, the search
    reports what that step served."""
    probe = _Answers(Load(400, 4.0, 0.6, 2.0, 0, 60.0))
    rate, tried = highest_kept_rate(1000, probe)
    assert (rate, len(tried)) == (60, 1)


def test_every_step_kept_up_with_ends_at_the_ceiling() -> None:
    probe = _Answers(*(_kept(step * 100) for step in range(1, 11)))
    assert highest_kept_rate(1000, probe)[0] == 1000
