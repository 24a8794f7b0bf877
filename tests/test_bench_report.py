"""The benchmark's report: instruction counts read from callgrind's dumps and shown beside the
ratios, and each ratio pass by pass."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench.instructions import net_per_request, prefix, total_instructions
from scripts.bench.load import GENERATOR, Load
from scripts.bench.report import (
    ASYNCPG,
    CACHED,
    OFF,
    ORM,
    REDIS_GET,
    SAMPLED,
    TWIN,
    UNCACHED,
    Reference,
    Row,
    Storm,
    Tail,
    _spread,
    median_tail,
    print_report,
)

# The head and tail of a dump as callgrind 3.19 writes it (`callgrind_control --dump`).
DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 19901
cmd:  gunicorn --config gunicorn.conf.py app.main:create_app()
part: 1

desc: Trigger: dump

positions: line
events: Ir
summary: 1497809436


ob=(30) math.cpython-311-x86_64-linux-gnu.so
fn=(7794) math_ceil
1217 4000
totals: 1497809436
"""


def test_the_total_comes_from_the_dump() -> None:
    assert total_instructions(DUMP) == 1_497_809_436
    assert total_instructions(DUMP.split("summary:")[0] + "totals: 42\n") == 42


@pytest.mark.parametrize("text", ["", "events: Ir\n", "totals: many\n", "totals:\n"])
def test_a_dump_without_a_total_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="totals"):
        total_instructions(text)


def test_the_prefix_follows_the_exec_and_names_dumps_by_pid() -> None:
    command = prefix(Path("/tmp/out"))
    assert command[:2] == ["valgrind", "--tool=callgrind"]
    assert "--instr-atstart=no" in command  # start-up is not counted
    assert "--trace-children=yes" in command  # `user-service serve` executes gunicorn
    assert command[-1] == "--callgrind-out-file=/tmp/out/callgrind.%p"


def test_the_idle_rate_is_taken_off_for_the_pass_duration() -> None:
    # 4 M a second idle; a 10 s pass of 400 requests counted 500 M: 40 M of it the timers'.
    assert net_per_request(500_000_000, 10.0, 16_000_000, 4.0, 400) == 1_150_000
    # Twice as slow a pass (a busier machine) counts twice the timers, and the same net.
    assert net_per_request(540_000_000, 20.0, 16_000_000, 4.0, 400) == 1_150_000


def test_a_net_count_is_never_negative() -> None:
    assert net_per_request(1_000, 10.0, 16_000_000, 4.0, 400) == 0


def _row(name: str, rps: float, cpu_us: float) -> Row:
    load = Load(requests=int(rps * 10), seconds=10, p50_ms=1.0, p99_ms=3.0, errors=0)
    return Row(name, load, cpu_us, cores=1.0, xacts=0.0, redis=3.0, rss_mb=[100.0])


ROWS = [
    _row(CACHED, 5000, 360),
    _row(SAMPLED, 4000, 460),
    _row(OFF, 6000, 280),
    _row(UNCACHED, 2000, 800),
    _row(ASYNCPG, 3000, 460),
    _row(REDIS_GET, 7000, 230),
    _row(ORM, 1500, 1100),
]


def _ratio_line(output: str, label: str) -> list[str]:
    (line,) = [line for line in output.splitlines() if line.strip().startswith(label)]
    return line.removeprefix(f"  {label}").split()


def test_each_ratio_shows_its_instruction_twin(capsys: pytest.CaptureFixture[str]) -> None:
    counts = {CACHED: 1_540_000, SAMPLED: 1_850_000, OFF: 1_384_000, UNCACHED: 3_080_000}
    counts |= {ASYNCPG: 1_100_000, REDIS_GET: 700_000, ORM: 2_500_000}
    print_report(ROWS, [], None, "mix", 1, counts)
    output = capsys.readouterr().out
    assert f"{CACHED:50} {1_540_000:12,}" in output
    # on / off: the bottom row's count over the top row's, as for CPU per request.
    rps, cpu, instr, verdict = _ratio_line(output, "instrumentation on / off")[:4]
    assert (rps, cpu, instr, verdict) == ("0.833", "0.778", f"{1_384_000 / 1_540_000:.3f}", "MISS")
    assert _ratio_line(output, "sampling 1.0 / sampling 0.1")[2] == "0.832"
    assert _ratio_line(output, "cached all-on / one Redis GET")[2] == "0.455"


def test_ratios_without_counts_show_a_dash(capsys: pytest.CaptureFixture[str]) -> None:
    print_report(ROWS, [], None, "mix", 1, {CACHED: 1_540_000})
    output = capsys.readouterr().out
    assert "user-space instructions per request" in output
    assert _ratio_line(output, "instrumentation on / off")[2] == "-"
    print_report(ROWS, [], None, "mix", 1, {})
    output = capsys.readouterr().out
    assert "user-space instructions per request" not in output
    assert _ratio_line(output, "cache on / cache off")[:3] == ["2.500", "2.222", "-"]


def test_each_ratio_is_shown_pass_by_pass(capsys: pytest.CaptureFixture[str]) -> None:
    # req/s and CPU us of the cached and instrumentation-off rows in four passes.
    measured = {
        CACHED: [(3751, 479), (3946, 452), (4877, 365), (4400, 400)],
        OFF: [(3198, 394), (5797, 307), (5368, 333), (5500, 320)],
    }
    passes = [_row(name, *measured[name][n]) for n in range(4) for name in (CACHED, OFF)]
    others = [row for row in ROWS if row.name not in (CACHED, OFF)]
    print_report(passes + others, [], None, "mix", 4, {})
    output = capsys.readouterr().out
    line = _ratio_line(output, "instrumentation on / off")
    # The verdict is on the median over pairs of passes of each pair's geometric mean, and
    # each pass's own ratio follows it.
    pairs = [
        math.sqrt(3751 / 3198 * 3946 / 5797),
        math.sqrt(4877 / 5368 * 4400 / 5500),
    ]
    assert line[0] == f"{(pairs[0] + pairs[1]) / 2:.3f}" == "0.873"
    assert line[-4:] == ["1.17", "0.68", "0.91", "0.80"]
    # A ratio of a row measured in passes and one measured once shows no passes, and the
    # ratio of their medians: (3946 + 4400) / 2 against 2000.
    assert _ratio_line(output, "cache on / cache off")[-1] == "1.5)"
    assert _ratio_line(output, "cache on / cache off")[0] == "2.087"


def test_the_twin_row_prints_the_measurements_own_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    passes = [
        _row(name, rps, cpu)
        for cached, twin in (((5000, 360), (4500, 400)), ((4000, 450), (5000, 360)))
        for name, (rps, cpu) in ((CACHED, cached), (TWIN, twin))
    ]
    print_report(passes + ROWS[1:], [], None, "mix", 2, {})
    output = capsys.readouterr().out
    rps, cpu = _ratio_line(output, "A/A: all on / its twin")[:2]
    assert rps == f"{math.sqrt(5000 / 4500 * 4000 / 5000):.3f}" == "0.943"
    assert cpu == f"{math.sqrt(400 / 360 * 360 / 450):.3f}" == "0.943"
    print_report(ROWS, [], None, "mix", 1, {})
    assert "A/A" not in capsys.readouterr().out


def test_the_tail_verdict_takes_the_run_with_the_median_ratio() -> None:
    def run(p50: float, p99: float) -> Load:
        return Load(requests=100, seconds=1, p50_ms=p50, p99_ms=p99, errors=0)

    runs = [run(1.0, 9.0), run(2.0, 5.0), run(1.0, 3.0)]
    assert median_tail(runs) is runs[2]  # ratios 9, 2.5 and 3: the median is 3
    assert median_tail(runs[:1]) is runs[0]


def test_the_tail_is_shown_beside_its_references(capsys: pytest.CaptureFixture[str]) -> None:
    """The service's tail has the verdict; the figures it is read against are printed under
    it in the order given, each with its own precision and no goal."""
    service = Load(45000, 15.0, 0.70, 3.36, 0, 3000.0)
    references = [
        Reference("bare Redis GET, same rate", 3.0, "the machine's own"),
        Reference("server CPU stalls >= 1 ms/s", 2.5, "longest 4.2 ms", decimals=1),
    ]
    print_report(ROWS, [], Tail(service, [120.0, 131.0], references), "mix", 1, {})
    lines = capsys.readouterr().out.splitlines()
    tail = next(index for index, line in enumerate(lines) if "p99 / p50 at 70% of peak" in line)
    assert "4.80" in lines[tail] and "MISS (goal <= 4.0)" in lines[tail]
    assert "bare Redis GET, same rate" in lines[tail + 1] and " 3.00 " in lines[tail + 1]
    assert lines[tail + 1].endswith("no goal: the machine's own")
    assert "server CPU stalls" in lines[tail + 2] and " 2.5 " in lines[tail + 2]
    assert lines[tail + 2].endswith("no goal: longest 4.2 ms")
    assert "errors at 70% of peak" in lines[tail + 3] and "PASS (goal 0)" in lines[tail + 3]
    assert "max worker RSS" in lines[tail + 4] and " 131 " in lines[tail + 4]


def test_the_tails_errors_say_what_they_were(capsys: pytest.CaptureFixture[str]) -> None:
    failed = Load(45000, 15.0, 0.70, 2.10, 4, 3000.0, {"HTTP 503": 3, "no answer (timeout)": 1})
    print_report(ROWS, [], Tail(failed, [120.0], []), "mix", 1, {})
    line = next(line for line in capsys.readouterr().out.splitlines() if "errors at 70%" in line)
    assert line.endswith("MISS (goal 0) (3 HTTP 503, 1 no answer (timeout))")


def test_the_login_storm_verdict_is_on_the_median_p99s(capsys: pytest.CaptureFixture[str]) -> None:
    """The storm's runs against the quiet ones, median against median: one wild run on
    either side does not decide it, and a read that failed beside the storm is a miss."""

    def run(p99: float, errors: int = 0) -> Load:
        return Load(12000, 15.0, 0.5, p99, errors)

    quiet = [run(1.2), run(1.0), run(9.0)]
    print_report(
        ROWS, [], None, "mix", 1, {}, Storm(quiet, [run(1.4), run(30.0), run(1.1)], [112.0, 113.0])
    )
    lines = capsys.readouterr().out.splitlines()
    verdict = next(index for index, line in enumerate(lines) if "login storm / alone" in line)
    assert " 1.17 " in lines[verdict] and "PASS (goal <= 1.5)" in lines[verdict]
    assert "errors, reads beside the storm" in lines[verdict + 1]
    assert lines[verdict + 1].endswith("PASS (goal 0)")
    print_report(
        ROWS,
        [],
        None,
        "mix",
        1,
        {},
        Storm(quiet, [run(2.0), run(1.9, 2), run(2.2)], [112.0, 181.0]),
    )
    lines = capsys.readouterr().out.splitlines()
    verdict = next(index for index, line in enumerate(lines) if "login storm / alone" in line)
    assert " 1.67 " in lines[verdict] and "MISS (goal <= 1.5)" in lines[verdict]
    assert lines[verdict + 1].endswith("MISS (goal 0)") and " 2 " in lines[verdict + 1]


def test_the_workers_rss_after_the_storm_has_its_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each hash holds ARGON2_MEMORY_KIB: an allocator that kept it after the storm would
    grow the workers past the RSS goal where the read runs never show it."""
    quiet = [Load(12000, 15.0, 0.5, 1.0, 0)]
    for rss, verdict in (([112.0, 113.0], "PASS"), ([112.0, 181.0], "MISS")):
        print_report(ROWS, [], None, "mix", 1, {}, Storm(quiet, quiet, rss))
        line = next(
            line for line in capsys.readouterr().out.splitlines() if "RSS after the storm" in line
        )
        assert f" {max(rss):.0f} " in line and line.endswith(f"{verdict} (goal <= 150)")


def test_the_spread_is_the_middle_half_of_the_passes() -> None:
    # One pass far off moves the full range but not the interquartile one.
    steady = [_row(CACHED, rps, 360) for rps in (4800, 4900, 5000, 5100, 5200)]
    wild = [*steady[:4], _row(CACHED, 9000, 360)]
    assert _spread(steady) == _spread(wild) == f"{100 * 200 / 5000:5.0f}%"
    assert _spread(steady[:1]) == ""


def test_the_generators_run_under_sched_batch() -> None:
    # The prefix puts the generator under SCHED_BATCH, which needs no privilege.
    policy = subprocess.run(
        [*GENERATOR, sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert int(policy) == os.SCHED_BATCH
