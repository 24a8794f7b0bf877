"""The compared rows' order pass by pass, and the ratio read from pairs of passes."""

from __future__ import annotations

import argparse

import pytest

from scripts.bench.passes import even_passes, lead_in_seconds, paired_ratio, pass_order
from tests.support.refusals import refusal

ROWS = ["on", "sampled", "off", "twin", "uncached", "bare"]


def test_each_pair_of_passes_gives_every_row_the_same_mean_place() -> None:
    for first in range(0, 10, 2):
        pair = [pass_order(ROWS, first), pass_order(ROWS, first + 1)]
        places = {row: sum(order.index(row) for order in pair) for row in ROWS}
        assert set(places.values()) == {len(ROWS) - 1}


def test_of_any_two_rows_each_goes_first_once_in_a_pair() -> None:
    pair = [pass_order(ROWS, 4), pass_order(ROWS, 5)]
    for a in ROWS:
        for b in ROWS:
            if a != b:
                assert sum(order.index(a) < order.index(b) for order in pair) == 1


def test_the_pair_cancels_a_cost_of_going_first() -> None:
    # True rates 900 and 1000 (a ratio of 0.9); whichever row runs first in its pass loses
    # 8%. Each pass alone is off by 8% one way or the other, the pairs are not.
    top, bottom = [], []
    for number in range(10):
        first = pass_order(["top", "bottom"], number)[0]
        top.append(900 * (0.92 if first == "top" else 1.0))
        bottom.append(1000 * (0.92 if first == "bottom" else 1.0))
    assert {round(t / b, 3) for t, b in zip(top, bottom, strict=True)} == {0.828, 0.978}
    assert paired_ratio(top, bottom) == pytest.approx(0.9, rel=1e-12)


def test_a_disturbed_pair_does_not_move_the_median() -> None:
    top = [900.0, 900.0, 900.0, 900.0, 300.0, 900.0]
    bottom = [1000.0] * 6
    assert paired_ratio(top, bottom) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("top", "bottom"), [([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]), ([1.0, 2.0], [1.0]), ([], [])]
)
def test_passes_that_do_not_pair_are_refused(top: list[float], bottom: list[float]) -> None:
    with pytest.raises(ValueError, match="same even number of passes"):
        paired_ratio(top, bottom)


@pytest.mark.parametrize(("text", "error"), [("3", "even"), ("0", "even"), ("ten", "whole")])
def test_an_odd_or_unreadable_pass_count_is_refused(text: str, error: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=error):
        even_passes(text)
    assert even_passes("10") == 10


@pytest.mark.parametrize(("text", "error"), [("-1", "0 or more"), ("1.5", "whole seconds")])
def test_a_negative_or_fractional_lead_in_is_refused(text: str, error: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=error):
        lead_in_seconds(text)
    assert lead_in_seconds("0") == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--passes", "7"], "--passes must be even and at least 2"),
        (["--lead-in", "-2"], "--lead-in must be 0 or more seconds"),
    ],
)
def test_the_bench_refuses_bad_arguments_before_starting_anything(
    arguments: list[str], message: str
) -> None:
    assert message in refusal("scripts.bench.run", *arguments)
