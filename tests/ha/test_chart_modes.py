"""The chart's values for each high-availability mode: what the pods get, where they may
connect, and a connection budget that knows about PgBouncer."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.deploy.chart import Helm, HelmError, find_helm, one, value_files


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm(find_helm())


def _config(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap")["data"]
    return data


def _secret(objects: list[dict[str, Any]]) -> dict[str, str]:
    secrets = [o for o in objects if o["kind"] == "Secret" and "helm.sh/hook" not in str(o)]
    return {k: base64.b64decode(v).decode() for k, v in secrets[0]["data"].items()}


def _egress_ports(objects: list[dict[str, Any]]) -> set[int]:
    policy = one(objects, "NetworkPolicy")
    return {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}


def test_sentinel_mode(helm: Helm) -> None:
    objects = helm.template(
        value_files("defaults"),
        {
            "redis.sentinel.hosts": "{sentinel-0.redis:26379,sentinel-1.redis:26379}",
            "redis.sentinel.masterName": "users",
            "redis.sentinel.password": "sentinel-secret",
            "redis.password": "data-secret",
        },
    )
    config, secret = _config(objects), _secret(objects)
    assert config["REDIS_SENTINELS"] == "sentinel-0.redis:26379,sentinel-1.redis:26379"
    assert config["REDIS_SENTINEL_MASTER"] == "users"
    assert "REDIS_URL" not in secret
    assert secret["REDIS_PASSWORD"] == "data-secret"
    assert secret["REDIS_SENTINEL_PASSWORD"] == "sentinel-secret"
    # The Sentinels' port, and the Redis servers' port they hand out.
    assert {26379, 6379} <= _egress_ports(objects)


def test_sentinel_hosts_must_be_host_port(helm: Helm) -> None:
    with pytest.raises(HelmError, match="sentinel"):
        helm.template(value_files("defaults"), {"redis.sentinel.hosts": "{sentinel-0}"})


def test_multi_host_url_opens_every_port(helm: Helm) -> None:
    url = (
        "postgresql+asyncpg://u:p@/users?host=pg-0.db:5432&host=pg-1.db:5433"
        "&target_session_attrs=read-write"
    )
    objects = helm.template(value_files("defaults"), {"postgres.url": url.replace(",", "\\,")})
    assert _secret(objects)["DATABASE_URL"] == url
    assert {5432, 5433} <= _egress_ports(objects)


def test_pgbouncer_budget_counts_client_connections(helm: Helm) -> None:
    values = {
        "postgres.pgbouncer.enabled": "true",
        "postgres.port": "6432",
        "autoscaling.maxReplicas": "20",
    }
    with pytest.raises(HelmError) as refused:
        helm.template(value_files("defaults"), values)
    message = str(refused.value)
    assert "= 463 client connections > postgres.pgbouncer.maxClientConnections (100)" in message
    # PostgreSQL's own max_connections (100) no longer bounds the pods: PgBouncer's does.
    objects = helm.template(
        value_files("defaults"), {**values, "postgres.pgbouncer.maxClientConnections": "1000"}
    )
    assert _config(objects)["DB_PGBOUNCER"] == "true"
    assert 6432 in _egress_ports(objects)


def test_cluster_mode(helm: Helm) -> None:
    values = {"redis.cluster.nodes": "{redis-0.redis:6379,redis-1.redis:6380}"}
    with pytest.raises(HelmError, match=r"config.CACHE_KEY_PREFIX with a hash tag"):
        helm.template(value_files("defaults"), values)
    objects = helm.template(
        value_files("defaults"),
        {**values, "config.CACHE_KEY_PREFIX": "\\{us:v2\\}", "redis.password": "nodes"},
    )
    config, secret = _config(objects), _secret(objects)
    assert config["REDIS_CLUSTER_NODES"] == "redis-0.redis:6379,redis-1.redis:6380"
    assert config["CACHE_KEY_PREFIX"] == "{us:v2}"
    assert "REDIS_URL" not in secret and secret["REDIS_PASSWORD"] == "nodes"
    assert {6379, 6380} <= _egress_ports(objects)
