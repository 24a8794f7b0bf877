"""The benchmark's latency runs give the server a core of its own and the rest to the others."""

from __future__ import annotations

from scripts.bench import cores


def test_the_server_gets_the_first_cpu_and_the_others_the_rest() -> None:
    split = cores.split({5, 2, 7})
    assert split is not None
    assert split.server == {2} and split.others == {5, 7}
    assert cores.on(split.others) == ("taskset", "-c", "5,7")
    assert "CPU 2 (one worker)" in split.describe() and "CPU 5,7" in split.describe()


def test_one_cpu_is_not_split() -> None:
    assert cores.split({0}) is None
    assert cores.on(None) == ()
