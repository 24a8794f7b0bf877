"""A Python client generated from the live document (openapi-python-client) runs the README
journey against the real service, and the document passes an OpenAPI linter (Redocly)."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import REPO, RunningService

PASSWORD = "correct horse battery"
REDOCLY = REPO / ".tools" / "redocly-2.77.0" / "node_modules" / ".bin" / "redocly"


@pytest.fixture(scope="module")
def document_file(live_document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(live_document), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def client_package(document_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("client") / "user_service_client"
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(document_file),
            "--output-path",
            str(out),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The generator warns about anything it had to skip or guess: a clean document has none.
    assert "Warning" not in output and "WARNING" not in output, output
    sys.path.insert(0, str(out.parent))
    try:
        yield importlib.import_module("user_service_client")
    finally:
        sys.path.remove(str(out.parent))
        for name in [name for name in sys.modules if name.startswith("user_service_client")]:
            del sys.modules[name]


def test_generated_names_are_the_operation_ids_and_schema_names(client_package: Any) -> None:
    api = importlib.import_module("user_service_client.api")
    modules = {path.stem for path in Path(api.__file__).parent.rglob("*.py")}
    assert {"sign_up", "login", "read_me", "read_user", "refresh_tokens", "logout"} <= modules
    models = importlib.import_module("user_service_client.models")
    assert {"UserCreate", "UserRead", "LoginForm", "TokenPair", "Problem", "FieldError"} <= set(
        dir(models)
    )


def test_readme_journey_through_the_generated_client(
    client_package: Any, service: RunningService
) -> None:
    sign_up = importlib.import_module("user_service_client.api.users.sign_up")
    read_me = importlib.import_module("user_service_client.api.users.read_me")
    login = importlib.import_module("user_service_client.api.auth.login")
    refresh = importlib.import_module("user_service_client.api.auth.refresh_tokens")
    logout = importlib.import_module("user_service_client.api.auth.logout")
    models = importlib.import_module("user_service_client.models")
    email = f"ada-{uuid.uuid4().hex[:6]}@example.com"

    with client_package.Client(base_url=service.base_url) as client:
        created = sign_up.sync_detailed(
            client=client, body=models.UserCreate(email=email, password=PASSWORD)
        )
        assert created.status_code == 201, created.content
        assert created.parsed.email == email
        assert created.headers["location"] == f"/api/v1/users/{created.parsed.id}"

        taken = sign_up.sync_detailed(
            client=client, body=models.UserCreate(email=email, password=PASSWORD)
        )
        assert taken.status_code == 409
        assert isinstance(taken.parsed, models.Problem)
        assert taken.parsed.type_.endswith("/conflict")

        invalid = sign_up.sync_detailed(
            client=client, body=models.UserCreate(email="not-an-email", password=PASSWORD)
        )
        assert invalid.status_code == 422
        assert isinstance(invalid.parsed, models.Problem)
        assert invalid.parsed.errors[0].field == "body.email"

        tokens = login.sync(client=client, body=models.LoginForm(username=email, password=PASSWORD))
        assert isinstance(tokens, models.TokenPair), tokens

    with client_package.AuthenticatedClient(
        base_url=service.base_url, token=tokens.access_token
    ) as authed:
        me = read_me.sync(client=authed)
        assert isinstance(me, models.UserRead), me
        assert me.email == email

        renewed = refresh.sync(
            client=authed, body=models.RefreshRequest(refresh_token=tokens.refresh_token)
        )
        assert isinstance(renewed, models.TokenPair), renewed

    with client_package.AuthenticatedClient(
        base_url=service.base_url, token=renewed.access_token
    ) as authed:
        assert logout.sync_detailed(client=authed).status_code == 204
        gone = read_me.sync_detailed(client=authed)
        assert gone.status_code == 401
        assert isinstance(gone.parsed, models.Problem)


def test_document_passes_the_openapi_linter(document_file: Path) -> None:
    assert REDOCLY.exists(), "run scripts/install-docs-tools.sh (installs the pinned Redocly CLI)"
    assert shutil.which("node"), "node is needed for the Redocly CLI"
    result = subprocess.run(
        [str(REDOCLY), "lint", str(document_file), "--format", "stylish"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            "REDOCLY_TELEMETRY": "off",
            "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Validation failed" not in output and " error " not in output, output
