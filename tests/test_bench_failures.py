"""What the benchmark says its failed requests were: each status that is not 2xx, and the
requests that got no answer under vegeta's reasons, so a reader of an error count knows
whether the service refused, failed or never answered."""

from __future__ import annotations

from scripts.bench.load import Load, describe_failures, failure_kinds, merged_failures

# The status_codes and errors of a `vegeta report -type=json` with two timeouts, a refused
# connection and three 503s.
CODES = {"0": 3, "200": 7990, "503": 3}
MESSAGES = [
    'Get "http://127.0.0.1:40001/api/v1/users/8c0f": context deadline exceeded',
    'Get "http://127.0.0.1:40001/api/v1/users/51aa": context deadline exceeded',
    'Get "http://127.0.0.1:40001/api/v1/users/51aa": dial tcp 127.0.0.1:40001: connect: '
    "connection refused",
    "503 Service Unavailable",
]


def test_each_status_and_the_unanswered_requests_are_counted_apart() -> None:
    assert failure_kinds(CODES, MESSAGES) == {
        "HTTP 503": 3,
        "no answer (context deadline exceeded; dial tcp 127.0.0.1:40001: connect: "
        "connection refused)": 3,
    }


def test_a_run_without_failures_has_none() -> None:
    assert failure_kinds({"200": 100}, []) == {}
    assert describe_failures({}) == ""


def test_unanswered_requests_without_a_reason_still_count() -> None:
    assert failure_kinds({"0": 2, "200": 5}, []) == {"no answer (no reason given)": 2}


def test_runs_add_up_kind_by_kind() -> None:
    def run(failures: dict[str, int]) -> Load:
        return Load(100, 1.0, 1.0, 2.0, sum(failures.values()), failures=failures)

    total = merged_failures([run({"HTTP 503": 2}), run({}), run({"HTTP 503": 1, "HTTP 500": 4})])
    assert total == {"HTTP 503": 3, "HTTP 500": 4}
    assert describe_failures(total) == " (3 HTTP 503, 4 HTTP 500)"
