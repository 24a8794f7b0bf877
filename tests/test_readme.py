"""The README's configuration table names every variable the settings read."""

from __future__ import annotations

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
