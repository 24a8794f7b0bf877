"""The chart's signing keys: the KEK in the Secret, the rotation CronJob (off by default),
introspection clients, and the refusal of an overlap a cached JWKS or a live token could miss."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from .chart import Helm, HelmError, find, one, value_files


def _secret(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The app's Secret (not the migration hook's copy, which carries the same keys)."""
    [secret] = [
        obj for obj in find(objects, "Secret") if not obj["metadata"]["name"].endswith("-migrate")
    ]
    return secret


def _config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [config] = [
        obj
        for obj in find(objects, "ConfigMap")
        if "grafana_dashboard" not in (obj["metadata"].get("labels") or {})
    ]
    return config


def _secret_keys(objects: list[dict[str, Any]]) -> set[str]:
    return set(_secret(objects)["data"])


def test_defaults_carry_the_kek_and_no_rotation_job(helm: Helm) -> None:
    objects = helm.template(value_files("defaults"))
    assert {"SIGNING_KEY_ENCRYPTION_KEY", "JWT_SECRET_KEY"} <= _secret_keys(objects)
    assert "INTROSPECTION_CLIENTS" not in _secret_keys(objects)
    assert find(objects, "CronJob") == []
    config = _config(objects)["data"]
    assert config["JWT_ALGORITHM"] == "EdDSA" and config["JWKS_MAX_AGE_SECONDS"] == "300"


def test_rotation_cronjob_and_introspection_clients(helm: Helm) -> None:
    objects = helm.template(value_files("everything"))
    cron = one(objects, "CronJob", "keys-rotation")
    assert cron["spec"]["schedule"] == "0 3 * * 1"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["user-service", "keys", "rotate"]
    refs = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
    assert _config(objects)["metadata"]["name"] in refs
    assert _secret(objects)["metadata"]["name"] in refs
    assert pod["automountServiceAccountToken"] is False
    for secret in find(objects, "Secret"):  # the migration Job validates production settings too
        assert "SIGNING_KEY_ENCRYPTION_KEY" in secret["data"], secret["metadata"]["name"]
    config = _config(objects)["data"]
    assert config["SIGNING_KEY_OVERLAP_SECONDS"] == "1209900"
    assert config["SIGNING_KEY_ROTATION_PERIOD_SECONDS"] == "604800"
    clients = base64.b64decode(_secret(objects)["data"]["INTROSPECTION_CLIENTS"]).decode()
    assert clients == "orders:orders-client-secret-0123456789"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"keys.rotation.overlapSeconds": "1209000"},
            "keys.rotation.overlapSeconds (1209000) must be at least config.JWKS_MAX_AGE_SECONDS "
            "(300) + the longest token lifetime",
        ),
        (
            {"keys.rotation.overlapSeconds": "1000", "config.REFRESH_TOKEN_TTL_SECONDS": "600"},
            "keys.rotation.overlapSeconds (1000) must be at least config.JWKS_MAX_AGE_SECONDS "
            "(300) + the longest token lifetime, max(config.ACCESS_TOKEN_TTL_SECONDS, "
            "config.REFRESH_TOKEN_TTL_SECONDS) (900) = 1200",
        ),
        ({"keys.rotation.periodSeconds": "300"}, "keys.rotation.periodSeconds (300) must exceed"),
    ],
)
def test_rotation_timing_a_consumer_could_miss_is_refused(
    helm: Helm, values: dict[str, str], expected: str
) -> None:
    with pytest.raises(HelmError) as caught:
        helm.template(value_files("defaults"), {"keys.rotation.enabled": "true", **values})
    assert expected in str(caught.value), str(caught.value)


def test_the_schema_refuses_an_impossible_overlap(helm: Helm) -> None:
    with pytest.raises(HelmError) as caught:
        helm.template(value_files("defaults"), {"keys.rotation.overlapSeconds": "10"})
    assert "overlapSeconds" in str(caught.value)


def test_hs256_needs_no_kek_and_runs_no_rotation(helm: Helm) -> None:
    objects = helm.template(
        value_files("defaults"),
        {
            "config.JWT_ALGORITHM": "HS256",
            "keys.encryptionKey": "",
            "keys.rotation.enabled": "true",
        },
    )
    assert "SIGNING_KEY_ENCRYPTION_KEY" not in _secret_keys(objects)
    assert find(objects, "CronJob") == []
