"""With CI=true a skipped test fails the run, unless tests/allowed_skips.toml allows it.

A skip proves nothing: in CI, where every tool is installed by the project's own scripts,
a test that skips is a test that silently stopped running. The few skips that a clean
machine legitimately produces are listed, each with its reason, in tests/allowed_skips.toml
and printed at the end of the run. Loaded with `-p tests.support.skip_policy` (pyproject).
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ALLOW_LIST = Path(__file__).resolve().parents[1] / "allowed_skips.toml"
# Only this policy's own tests point it at another list.
ALLOW_LIST_OVERRIDE = "TEST_ALLOWED_SKIPS"


@dataclass(frozen=True)
class AllowedSkip:
    tests: str  # a glob over node ids, e.g. "tests/deploy/*"
    reason: str  # a substring of the skip reason
    why: str  # why this skip is acceptable even in CI

    def covers(self, nodeid: str, reason: str) -> bool:
        return fnmatch.fnmatchcase(nodeid, self.tests) and self.reason in reason


def load_allow_list(path: Path = ALLOW_LIST) -> list[AllowedSkip]:
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("skip", [])
    allowed = [AllowedSkip(e["tests"], e["reason"], e["why"]) for e in entries]
    for entry in allowed:
        if not (entry.tests and entry.reason and entry.why):
            raise ValueError(f"{path}: every skip needs tests, reason and why: {entry}")
    return allowed


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1", "yes"}


def _reason(report: pytest.TestReport) -> str:
    # A skip's longrepr is (file, line, "Skipped: <reason>").
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


class SkipPolicy:
    def __init__(self, allowed: list[AllowedSkip], enforce: bool) -> None:
        self.allowed = allowed
        self.enforce = enforce
        self.tolerated: list[tuple[str, str, AllowedSkip]] = []
        self.refused: list[tuple[str, str]] = []

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        reason = _reason(report)
        entry = next((a for a in self.allowed if a.covers(report.nodeid, reason)), None)
        if entry is not None:
            self.tolerated.append((report.nodeid, reason, entry))
        else:
            self.refused.append((report.nodeid, reason))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.enforce and self.refused and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.tolerated:
            terminalreporter.section("skips allowed by tests/allowed_skips.toml")
            for nodeid, reason, entry in self.tolerated:
                terminalreporter.line(f"{nodeid}: {reason}  [allowed: {entry.why}]")
        if self.refused and self.enforce:
            terminalreporter.section("skips that fail this run (CI=true)", red=True)
            for nodeid, reason in self.refused:
                terminalreporter.line(f"{nodeid}: {reason}", red=True)
            terminalreporter.line(
                "A skip in CI means a test stopped running: make its tool install with the "
                "project's scripts, or allow it in tests/allowed_skips.toml saying why.",
                red=True,
            )


def pytest_configure(config: pytest.Config) -> None:
    path = Path(os.environ.get(ALLOW_LIST_OVERRIDE) or ALLOW_LIST)
    config.pluginmanager.register(SkipPolicy(load_allow_list(path), in_ci()), "skip-policy")
