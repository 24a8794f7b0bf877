"""With CI=true a skip fails the run unless the allow-list names it; the list is printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.skip_policy import ALLOW_LIST, load_allow_list

REPO = Path(__file__).resolve().parents[1]
_PLUGIN = ("-p", "tests.support.skip_policy")

_TESTS = """
import pytest

def test_runs():
    assert True

def test_tool_missing():
    pytest.skip("frobnicator not installed")

@pytest.mark.xfail(strict=True)
def test_known_bug():
    assert False
"""


def _run(tmp_path: Path, ci: str, allowed: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(_TESTS, encoding="utf-8")
    allow_list = tmp_path / "allowed.toml"
    allow_list.write_text(allowed, encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if k != "CI"},
        "CI": ci,
        "TEST_ALLOWED_SKIPS": str(allow_list),
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *_PLUGIN, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


ALLOWING = """
[[skip]]
tests = "*test_sample.py::test_tool_missing"
reason = "frobnicator"
why = "frobnicators cannot be installed here"
"""


def test_a_skip_fails_a_ci_run(tmp_path: Path) -> None:
    result = _run(tmp_path, "true", "")
    assert result.returncode == 1, result.stdout
    assert "skips that fail this run" in result.stdout
    assert "test_tool_missing: frobnicator not installed" in result.stdout


def test_an_allowed_skip_passes_and_is_printed(tmp_path: Path) -> None:
    result = _run(tmp_path, "true", ALLOWING)
    assert result.returncode == 0, result.stdout
    assert "skips allowed by tests/allowed_skips.toml" in result.stdout
    assert "frobnicators cannot be installed here" in result.stdout


def test_outside_ci_a_skip_is_only_reported(tmp_path: Path) -> None:
    result = _run(tmp_path, "", "")
    assert result.returncode == 0, result.stdout
    assert "skips that fail" not in result.stdout


def test_the_projects_allow_list_says_why_for_each_entry() -> None:
    entries = load_allow_list(ALLOW_LIST)
    assert all(len(entry.why) > 20 for entry in entries)


def test_an_entry_without_a_reason_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[skip]]\ntests = "tests/*"\nreason = ""\nwhy = "because"\n')
    with pytest.raises(ValueError, match="needs tests, reason and why"):
        load_allow_list(path)
