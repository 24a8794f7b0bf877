"""Values the chart must refuse, each with a message naming what to fix; and the config
keys it renders must be env vars the app reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .chart import CHART_DIR, REPO_ROOT, Helm, HelmError, one, value_files


def names_value(message: str, dotted: str) -> bool:
    """Helm 4 reports the JSON pointer (at '/config/X'), Helm 3 the dotted path (- config.X:)."""
    pointer = "/" + dotted.replace(".", "/")
    return f"at '{pointer}'" in message or f"- {dotted}:" in message


def refused(helm: Helm, files: list[Path], values: dict[str, str]) -> str:
    with pytest.raises(HelmError) as caught:
        helm.template(files, values)
    return str(caught.value)


def test_unknown_top_level_key(helm: Helm) -> None:
    message = refused(helm, value_files("defaults"), {"replicas": "3"})
    assert (
        "additional properties 'replicas' not allowed" in message  # Helm 4
        or "Additional property replicas is not allowed" in message  # Helm 3
    ), message


def test_unknown_config_key(helm: Helm) -> None:
    """A misspelt env var would be ignored by the app; the schema refuses it instead."""
    message = refused(helm, value_files("defaults"), {"config.DB_POOLSIZE": "3"})
    assert "DB_POOLSIZE" in message and "not allowed" in message, message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("config.DB_POOL_SIZE", "many"),
        ("replicaCount", "two"),
        ("autoscaling.enabled", "maybe"),
        ("service.port", "70000"),
        ("config.LOG_LEVEL", "LOUD"),
        ("enableServiceLinks", "yes"),
    ],
)
def test_wrong_type(helm: Helm, key: str, value: str) -> None:
    message = refused(helm, value_files("defaults"), {key: value})
    assert names_value(message, key), message


def test_connection_budget(helm: Helm) -> None:
    message = refused(helm, value_files("defaults"), {"autoscaling.maxReplicas": "10"})
    assert "connection budget exceeded" in message
    assert (
        "(autoscaling.maxReplicas (10) + rollout surge (1)) x config.WEB_CONCURRENCY (2) x "
        "(config.DB_POOL_SIZE (5) + config.DB_MAX_OVERFLOW (5) + readiness probe (1)) "
        "+ migration Job (1) = 243 > postgres.maxConnections (100)" in message
    ), message


def test_connection_budget_uses_replica_count_without_autoscaling(helm: Helm) -> None:
    message = refused(
        helm, value_files("no-autoscaling"), {"replicaCount": "5", "config.DB_POOL_SIZE": "8"}
    )
    assert (
        "(replicaCount (5) + rollout surge (1)) x config.WEB_CONCURRENCY (2) x "
        "(config.DB_POOL_SIZE (8)" in message
    )
    # The same numbers fit a bigger server.
    helm.template(
        value_files("no-autoscaling"),
        {"replicaCount": "5", "config.DB_POOL_SIZE": "8", "postgres.maxConnections": "500"},
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"jwt.secretKey": "", "config.JWT_ALGORITHM": "HS256"}, "jwt.secretKey is required"),
        ({"keys.encryptionKey": ""}, "keys.encryptionKey is required"),
        ({"jwt.secretKey": "short"}, "jwt.secretKey must be at least 32 characters"),
        ({"postgres.host": ""}, "set postgres.url, or postgres.host and postgres.password"),
        ({"postgres.password": ""}, "postgres.password is required"),
        ({"redis.host": ""}, "set redis.url or redis.host"),
    ],
)
def test_missing_secret_values(helm: Helm, values: dict[str, str], expected: str) -> None:
    message = refused(helm, value_files("defaults"), values)
    assert expected in message
    assert "existingSecret" in message or "at least 32" in message


def test_nothing_given_fails_on_secrets(helm: Helm) -> None:
    message = refused(helm, [], {})
    assert "existingSecret" in message


def test_grace_period_too_short(helm: Helm) -> None:
    message = refused(helm, value_files("defaults"), {"terminationGracePeriodSeconds": "20"})
    assert (
        "terminationGracePeriodSeconds (20) must be longer than lifecycle.preStopSleepSeconds (5)"
        " + config.SHUTDOWN_DRAIN_SECONDS (3) + config.GUNICORN_GRACEFUL_TIMEOUT (20) = 28"
        in message
    )


def test_readiness_timeout_below_app_timeout(helm: Helm) -> None:
    message = refused(helm, value_files("defaults"), {"config.READINESS_TIMEOUT": "3"})
    assert (
        "probes.readiness.timeoutSeconds (2) must be longer than config.READINESS_TIMEOUT (3)"
        in message
    )


def test_otel_needs_endpoint(helm: Helm) -> None:
    assert "otel.enabled needs otel.endpoint" in refused(
        helm, value_files("defaults"), {"otel.enabled": "true"}
    )


def test_database_url_escapes_password(helm: Helm) -> None:
    import base64

    objects = helm.template(value_files("defaults"), {"postgres.password": "p@ss w+rd/1"})
    secret = next(
        o
        for o in objects
        if o["kind"] == "Secret" and "helm.sh/hook" not in (o["metadata"].get("annotations") or {})
    )
    url = base64.b64decode(secret["data"]["DATABASE_URL"]).decode()
    assert (
        url
        == "postgresql+asyncpg://user_service:p%40ss%20w%2Brd%2F1@postgres.databases.svc:5432/users"
    )


# ----------------------------------------------------------------- the contract with app/

# Env vars read by libraries rather than by our code: the OpenTelemetry SDK, prometheus_client
# and gunicorn itself. Every other name the chart sets must be a settings field or appear
# as a string literal in app/ or gunicorn.conf.py.
LIBRARY_VARS = {
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SDK_DISABLED",
    "PROMETHEUS_MULTIPROC_DIR",
    "WEB_CONCURRENCY",
}
SECRET_VARS = {
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET_KEY",
    "SIGNING_KEY_ENCRYPTION_KEY",
    "INTROSPECTION_CLIENTS",
}


def settings_env_names() -> set[str]:
    settings = pytest.importorskip("app.settings", reason="app/settings.py not present yet")
    return {(field.alias or name).upper() for name, field in settings.Settings.model_fields.items()}


def names_in_code() -> set[str]:
    conf = REPO_ROOT / "gunicorn.conf.py"
    sources = [conf, *(REPO_ROOT / "app").rglob("*.py")]
    return {
        m for path in sources for m in re.findall(r"[\"']([A-Z][A-Z0-9_]+)[\"']", path.read_text())
    }


def rendered_env_names(helm: Helm) -> set[str]:
    objects = helm.template(value_files("everything"))
    config = next(
        o
        for o in objects
        if o["kind"] == "ConfigMap" and "grafana_dashboard" not in o["metadata"]["labels"]
    )
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return set(config["data"]) | SECRET_VARS | {e["name"] for e in container["env"]}


def test_config_keys_are_read_by_the_app(helm: Helm) -> None:
    """Every env var the chart sets is read by the app, gunicorn.conf.py or a standard SDK:
    a name the app does not know would be silently ignored in production."""
    known = settings_env_names() | names_in_code() | LIBRARY_VARS
    unknown = sorted(rendered_env_names(helm) - known)
    assert not unknown, (
        f"the chart sets env vars nothing in app/ or gunicorn.conf.py reads: {unknown}"
    )
    assert settings_env_names() >= SECRET_VARS


def test_values_yaml_config_covers_schema() -> None:
    """values.yaml and values.schema.json list the same config keys (one source each way)."""
    import json

    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert set(values["config"]) == set(schema["properties"]["config"]["properties"])
    assert set(values) <= set(schema["properties"])
    assert re.fullmatch(r"[A-Z0-9_]+", "".join(values["config"]))
