"""The results table of fault and attack runs, printed at the end of the pytest session."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class ResultRow:
    fault: str
    requests_sent: int
    requests_failed: int
    failures_expected: str
    rows_checked: int
    recovery_seconds: float | None
    notes: str = ""


ROWS: list[ResultRow] = []
_printed = False


def record(**fields: Any) -> None:
    ROWS.append(ResultRow(**fields))


def print_table(terminalreporter: Any) -> None:
    """Print once per session (the hook lives in tests/conftest.py); also write JSON
    to $FAULTS_REPORT when it is set."""
    global _printed
    if _printed or not ROWS:
        return
    _printed = True
    terminalreporter.write_sep("=", "fault and attack results")
    terminalreporter.write_line(
        "| fault / attack | requests sent | requests failed | failures expected "
        "| rows checked | recovery (s) | notes |"
    )
    terminalreporter.write_line("|---|---:|---:|---|---:|---:|---|")
    for row in ROWS:
        recovery = "-" if row.recovery_seconds is None else f"{row.recovery_seconds:.2f}"
        terminalreporter.write_line(
            f"| {row.fault} | {row.requests_sent} | {row.requests_failed} | "
            f"{row.failures_expected} | {row.rows_checked} | {recovery} | {row.notes} |"
        )
    target = os.environ.get("FAULTS_REPORT")
    if target:
        Path(target).write_text(
            json.dumps([asdict(row) for row in ROWS], indent=2) + "\n", encoding="utf-8"
        )
