"""CPU accounting from /proc: the sweep's noise-resistant cost per request."""

from __future__ import annotations

import os
import sys

import pytest

from loadtests import cpu

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_sample_finds_a_process_and_its_children_and_measures_work() -> None:
    before = cpu.sample(os.getpid(), "no_such_database_here")
    sum(i * i for i in range(2_000_000))  # burn a little CPU in this process
    after = cpu.sample(os.getpid(), "no_such_database_here")
    assert str(os.getpid()) in after.service
    service, database = cpu.spent(before, after)
    assert service > 0
    assert database == 0


def test_processes_that_appear_count_from_zero() -> None:
    before = cpu.CpuSample(service={"1": 1.0}, database={})
    after = cpu.CpuSample(service={"1": 1.5, "2": 0.25}, database={"9": 2.0})
    assert cpu.spent(before, after) == (0.75, 2.0)
