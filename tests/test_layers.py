"""The layers import only downwards: the rules a reader of the Architecture section relies on."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import statement of `path`, nested ones included."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def _modules(layer: str) -> list[Path]:
    paths = sorted((APP / layer).glob("*.py"))
    assert paths, f"no modules under app/{layer}"
    return paths


def _top(module: str) -> str:
    return module.split(".")[0]


def test_api_runs_no_sql_and_no_redis_commands() -> None:
    offenders = [
        f"{path.name}: {module}"
        for path in _modules("api")
        for module, _ in _imports(path)
        if _top(module) in {"sqlalchemy", "redis", "asyncpg"}
    ]
    assert offenders == []


def test_infra_builds_no_services_and_never_reaches_up() -> None:
    offenders = [
        f"{path.name}: {module} {names}"
        for path in _modules("infra")
        for module, names in _imports(path)
        if module.startswith(("app.api", "app.wiring", "app.main"))
        or (module.startswith("app.services") and any(n.endswith("Service") for n in names))
    ]
    assert offenders == []


def test_services_never_reach_up() -> None:
    offenders = [
        f"{path.name}: {module}"
        for path in _modules("services")
        for module, _ in _imports(path)
        if module.startswith(("app.api", "app.wiring", "app.main", "fastapi", "starlette"))
    ]
    assert offenders == []


def test_nothing_outside_tests_imports_them() -> None:
    """The service, its tools (scripts/, loadtests/, dashboards/) and migrations ship without
    tests/: what they share with the tests lives on their side."""
    repo = APP.parent
    offenders = [
        f"{path.relative_to(repo)}: {module}"
        for folder in ("app", "scripts", "loadtests", "dashboards", "migrations")
        for path in sorted((repo / folder).rglob("*.py"))
        for module, _ in _imports(path)
        if _top(module) == "tests"
    ]
    assert offenders == []


def test_only_the_entry_points_build_services() -> None:
    """Services are built by the composition root (app/wiring.py) for the API, and by the
    command line for its short-lived commands; nothing else constructs them."""
    builders = {
        str(path.relative_to(APP))
        for path in APP.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"UserService", "AuthService", "TokenService", "PasswordService"}
    }
    assert builders == {"wiring.py", "cli.py"}


def test_the_command_line_runs_no_sql() -> None:
    """Commands wire and call services; the rules (and their SQL) live in the services."""
    modules = {module for module, _ in _imports(APP / "cli.py")}
    assert not {m for m in modules if m == "sqlalchemy" or m.startswith("sqlalchemy.")}
