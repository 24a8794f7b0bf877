"""The README documents every setting, the two commands and the architecture it describes."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    aliases = {field.alias for field in Settings.model_fields.values()}
    missing = sorted(alias for alias in aliases if alias and f"`{alias}`" not in README)
    assert not missing, f"README lacks {missing}"


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    assert "`make run`" in README and "`make test`" in README
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci


def test_code_sends_readers_only_to_documents_in_the_repository() -> None:
    """A docstring or comment that names a document (README.md, RUNBOOK.md, ...) names one
    this repository has; generated reports (report.md) are outputs, not documents."""
    repo = Path(__file__).resolve().parents[1]
    shipped = {path.name for path in repo.rglob("*.md") if ".venv" not in path.parts}
    mentions = sorted(
        f"{path.relative_to(repo)}: {name}"
        for folder in ("app", "dashboards", "loadtests", "scripts", "tests", "migrations")
        for path in (repo / folder).rglob("*.py")
        for name in re.findall(r"\b[A-Z][A-Z_]+\.md\b", path.read_text(encoding="utf-8"))
        if Path(name).name not in shipped
    )
    assert mentions == []


def test_readme_has_the_architecture_and_its_failure_matrix() -> None:
    section = README.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    for layer in ("app/wiring.py", "app/api/", "app/services/", "app/infra/"):
        assert f"`{layer}`" in section
    for row in ("| Redis |", "| PostgreSQL |", "| both |"):
        assert row in section
