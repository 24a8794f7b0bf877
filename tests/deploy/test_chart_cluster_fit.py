"""What the chart must get right in a real cluster: the connection budget counted the way
PostgreSQL sees it, probe timeouts against the real worst case, the migration Job scheduled
and authorised like the app, and egress to the ports the URLs really name."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.chart.app_defaults import app_defaults

from .chart import Helm, HelmError, one, value_files


def refused(helm: Helm, files: list[Any], values: dict[str, str]) -> str:
    with pytest.raises(HelmError) as caught:
        helm.template(files, values)
    return str(caught.value)


def test_budget_counts_surge_probe_and_migration(helm: Helm) -> None:
    # 4 replicas x 2 workers x 10 pooled = 80 fits 95 the old way; the real peak is
    # (4 + 1 surge) x 2 x (10 + 1 probe) + 1 migration = 111.
    message = refused(helm, value_files("defaults"), {"autoscaling.maxReplicas": "4"})
    assert (
        "(autoscaling.maxReplicas (4) + rollout surge (1)) x config.WEB_CONCURRENCY (2) x "
        "(config.DB_POOL_SIZE (5) + config.DB_MAX_OVERFLOW (5) + readiness probe (1)) "
        "+ migration Job (1) = 111 > postgres.maxConnections (100) - "
        "postgres.reservedConnections (5) = 95" in message
    ), message


def test_null_overflow_counts_as_the_app_default(helm: Helm) -> None:
    # A null leaves the app's default (5) in force, so the chart must count 5, not 0.
    message = refused(
        helm,
        value_files("no-autoscaling"),
        {"replicaCount": "4", "config.DB_MAX_OVERFLOW": "null"},
    )
    assert "config.DB_MAX_OVERFLOW (5)" in message, message


def test_zero_overflow_counts_as_zero(helm: Helm) -> None:
    # 0 is a value, not a missing one: (5 + 1) x 2 x (5 + 0 + 1) + 1 = 73 fits.
    helm.template(
        value_files("no-autoscaling"), {"replicaCount": "5", "config.DB_MAX_OVERFLOW": "0"}
    )


def test_chart_defaults_are_the_apps() -> None:
    """The chart's fallbacks for null config values come from the app itself."""
    from app.settings import Settings

    defaults = app_defaults()
    fields = {f.alias: f.default for f in Settings.model_fields.values() if f.alias}
    for key in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW", "READINESS_TIMEOUT", "SHUTDOWN_DRAIN_SECONDS"):
        assert defaults[key] == fields[key], key
    assert defaults["WEB_CONCURRENCY"] == 2 and defaults["GUNICORN_GRACEFUL_TIMEOUT"] == 20


def test_chart_app_defaults_file_is_current() -> None:
    from scripts.chart.app_defaults import OUTPUT, render

    assert OUTPUT.read_text() == render(), "run python -m scripts.chart.app_defaults --write"


def test_null_graceful_timeout_counts_as_gunicorns_default(helm: Helm) -> None:
    message = refused(
        helm,
        value_files("defaults"),
        {"config.GUNICORN_GRACEFUL_TIMEOUT": "null", "terminationGracePeriodSeconds": "27"},
    )
    assert "config.GUNICORN_GRACEFUL_TIMEOUT (20) = 28" in message, message


def test_readiness_probe_timeout_against_worst_case(helm: Helm) -> None:
    message = refused(helm, value_files("defaults"), {"config.READINESS_TIMEOUT": "2"})
    assert "probes.readiness.timeoutSeconds (2)" in message and "(2)" in message, message
    helm.template(
        value_files("defaults"),
        {"config.READINESS_TIMEOUT": "2", "probes.readiness.timeoutSeconds": "3"},
    )


def pod_spec(objects: list[dict[str, Any]], kind: str, component: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, kind, component)["spec"]["template"]["spec"]
    return spec


SCHEDULING = {
    "nodeSelector": {"pool": "apps"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "apps"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["apps"]}]}
                ]
            }
        }
    },
}


@pytest.mark.parametrize("values", ["defaults", "gitops"])
def test_migration_job_runs_like_the_app(helm: Helm, tmp_path: Any, values: str) -> None:
    import yaml

    extra = tmp_path / "extra.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                **SCHEDULING,
                "podAnnotations": {"example.com/team": "users"},
                "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:x"}},
                "migrations": {"podAnnotations": {"sidecar.istio.io/inject": "false"}},
            }
        )
    )
    objects = helm.template([*value_files(values), extra])
    job = pod_spec(objects, "Job", "migrations")
    app = pod_spec(objects, "Deployment", None)
    for key, value in SCHEDULING.items():
        assert job[key] == value == app[key], key
    annotations = one(objects, "Job", "migrations")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.com/team"] == "users"
    assert annotations["sidecar.istio.io/inject"] == "false"
    # Never the namespace's default account: it carries the workload identity annotations.
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert job["serviceAccountName"] in accounts
    identity = accounts[job["serviceAccountName"]]["metadata"]["annotations"]
    assert identity["eks.amazonaws.com/role-arn"] == "arn:x"
    if values == "gitops":
        assert job["serviceAccountName"] == app["serviceAccountName"]


def test_migration_job_overrides_scheduling(helm: Helm) -> None:
    objects = helm.template(
        value_files("defaults"),
        {"nodeSelector.pool": "apps", "migrations.nodeSelector.pool": "batch"},
    )
    assert pod_spec(objects, "Job", "migrations")["nodeSelector"] == {"pool": "batch"}


def test_gitops_job_is_not_deleted_after_finishing(helm: Helm) -> None:
    # A deleted Job is missing from the cluster: Argo CD or kubectl apply recreates it and
    # the migration runs again, every ttl.
    job = one(helm.template(value_files("gitops")), "Job", "migrations")
    assert "ttlSecondsAfterFinished" not in job["spec"]


def egress(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = one(objects, "NetworkPolicy")["spec"]["egress"]
    return rules


def ports_of(objects: list[dict[str, Any]]) -> list[set[int]]:
    return [{p["port"] for p in rule["ports"]} for rule in egress(objects)]


def test_egress_ports_come_from_the_urls(helm: Helm) -> None:
    objects = helm.template(
        value_files("defaults"),
        {
            "postgres.url": "postgresql+asyncpg://u:p@pgbouncer.db:6432/users",
            "redis.url": "rediss://cache.example.net:6380/0",
        },
    )
    assert ports_of(objects)[1:] == [{6432}, {6380}]


def test_egress_ports_default_to_the_schemes(helm: Helm) -> None:
    objects = helm.template(
        value_files("defaults"),
        {"postgres.url": "postgresql+asyncpg://u:p@db/users", "redis.url": "rediss://cache/0"},
    )
    assert ports_of(objects)[1:] == [{5432}, {6379}]


def test_egress_ports_with_existing_secret(helm: Helm) -> None:
    objects = helm.template(
        value_files("existing-secret"),
        {"networkPolicy.postgresPorts": "{6432}", "networkPolicy.redisPorts": "{6380,26379}"},
    )
    assert ports_of(objects)[1:] == [{6432}, {6380, 26379}]


def test_dns_egress_reaches_any_resolver_by_default(helm: Helm) -> None:
    # NodeLocal DNSCache (a link-local address) and OpenShift's DNS carry no kube-dns label.
    dns = egress(helm.template(value_files("defaults")))[0]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert "to" not in dns


def test_dns_egress_can_be_narrowed(helm: Helm) -> None:
    dns = egress(
        helm.template(
            value_files("defaults"), {"networkPolicy.dnsTo[0].ipBlock.cidr": "169.254.20.10/32"}
        )
    )[0]
    assert dns["to"] == [{"ipBlock": {"cidr": "169.254.20.10/32"}}]


def forwarded_allow_ips(objects: list[dict[str, Any]]) -> str:
    value: str = one(objects, "ConfigMap")["data"]["FORWARDED_ALLOW_IPS"]
    return value


def test_trusted_proxies_are_the_ingress_controllers(helm: Helm) -> None:
    assert forwarded_allow_ips(helm.template(value_files("defaults"))) == "127.0.0.1"
    objects = helm.template(value_files("defaults"), {"trustedProxies": "{10.42.0.0/16,fd00::/8}"})
    assert forwarded_allow_ips(objects) == "10.42.0.0/16,fd00::/8"


def test_trusted_proxies_have_one_source(helm: Helm) -> None:
    message = refused(helm, value_files("defaults"), {"config.FORWARDED_ALLOW_IPS": "10.0.0.0/8"})
    assert "FORWARDED_ALLOW_IPS" in message and "not allowed" in message, message


def test_trusted_proxies_must_be_addresses(helm: Helm) -> None:
    message = refused(helm, value_files("defaults"), {"trustedProxies": "{ingress-nginx}"})
    assert "trustedProxies" in message, message


def test_docs_follow_the_apps_production_default(helm: Helm) -> None:
    data = one(helm.template(value_files("defaults")), "ConfigMap")["data"]
    assert data["APP_ENV"] == "production" and "DOCS_ENABLED" not in data


def test_egress_ports_of_a_multi_host_url(helm: Helm, tmp_path: Any) -> None:
    # Failover URLs name every host; each host's port is opened.
    values = tmp_path / "multi.yaml"
    values.write_text("postgres:\n  url: postgresql+asyncpg://u:p@pg-a:5432,pg-b:5433/users\n")
    assert ports_of(helm.template([*value_files("defaults"), values]))[1] == {5432, 5433}


def test_metrics_have_their_own_port(helm: Helm) -> None:
    objects = helm.template(value_files("everything"))
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "metrics": 9464}
    config = [o for o in objects if o["kind"] == "ConfigMap" and "APP_ENV" in o.get("data", {})]
    assert config[0]["data"]["METRICS_PORT"] == "9464"
    service_ports = {p["name"]: p["targetPort"] for p in one(objects, "Service")["spec"]["ports"]}
    assert service_ports == {"http": "http", "metrics": "metrics"}
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    # The Ingress only ever reaches the public port.
    for rule in one(objects, "Ingress")["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            assert path["backend"]["service"]["port"] == {"name": "http"}
    # Scrapers are allowed on the metrics port apart from the clients on the http port.
    ingress = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert [rule["ports"] for rule in ingress] == [
        [{"port": "http", "protocol": "TCP"}],
        [{"port": "metrics", "protocol": "TCP"}],
    ]
    assert ingress[1]["from"][0] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    args = one(objects, "Job", "loadtest")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--metrics-url") + 1] == "http://user-service:9464"


def test_metrics_port_must_differ_from_the_public_one(helm: Helm) -> None:
    message = refused(helm, value_files("defaults"), {"metrics.port": "8000"})
    assert "metrics.port (8000) must differ from containerPort (8000)" in message, message


def rules_of(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups = one(objects, "PrometheusRule")["spec"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_service_monitor_names_the_job_the_alerts_select(helm: Helm) -> None:
    # fullnameOverride renames the Service, and so the job a ServiceMonitor would derive.
    objects = helm.template(value_files("everything"), {"fullnameOverride": "accounts"})
    relabelings = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["relabelings"]
    assert relabelings[0] == {
        "action": "replace",
        "targetLabel": "job",
        "replacement": "user-service",
    }
    # The user's own relabelings still apply, after the job's.
    assert relabelings[1]["targetLabel"] == "node"
    for rule in rules_of(objects):
        expr = str(rule["expr"])
        assert "job=~" not in expr, rule
        if "{" in expr and "kube_" not in expr and "objective" not in str(rule.get("record")):
            assert 'job="user-service"' in expr, rule


def test_job_name_is_a_value(helm: Helm) -> None:
    objects = helm.template(value_files("everything"), {"metrics.serviceMonitor.job": "accounts"})
    relabelings = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["relabelings"]
    assert relabelings[0]["replacement"] == "accounts"
    exprs = " ".join(str(rule["expr"]) for rule in rules_of(objects))
    assert 'job="accounts"' in exprs and 'job="user-service"' not in exprs


def test_absent_alert_keeps_the_namespace(helm: Helm) -> None:
    rules = rules_of(helm.template(value_files("everything")))
    absent = [rule for rule in rules if "absent(" in str(rule.get("expr"))]
    assert absent
    for rule in absent:
        # absent() carries only the equality matchers of its selector into the alert.
        assert 'namespace="users"' in rule["expr"], rule
        assert rule["labels"]["namespace"] == "users", rule


def test_extra_volumes_env_and_init_containers(helm: Helm, tmp_path: Any) -> None:
    import yaml

    extra = tmp_path / "extra.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "extraVolumes": [{"name": "jwt", "secret": {"secretName": "jwt-key"}}],
                "extraVolumeMounts": [{"name": "jwt", "mountPath": "/run/secrets/jwt"}],
                "extraEnvFrom": [{"secretRef": {"name": "more-settings"}}],
                "extraEnv": [{"name": "JWT_SECRET_KEY_FILE", "value": "/run/secrets/jwt/key"}],
                "initContainers": [{"name": "wait", "image": "busybox:1.37", "command": ["true"]}],
            }
        )
    )
    objects = helm.template([*value_files("gitops"), extra])
    for kind, component in (("Deployment", None), ("Job", "migrations")):
        spec = pod_spec(objects, kind, component)
        container = spec["containers"][0]
        # The *_FILE secrets are read by the app and by the migration alike.
        assert {"name": "jwt", "secret": {"secretName": "jwt-key"}} in spec["volumes"], kind
        assert {"name": "jwt", "mountPath": "/run/secrets/jwt"} in container["volumeMounts"]
        assert container["envFrom"][-1] == {"secretRef": {"name": "more-settings"}}, kind
    app = pod_spec(objects, "Deployment", None)
    assert [c["name"] for c in app["initContainers"]] == ["wait"]


def test_http_route(helm: Helm) -> None:
    objects = helm.template(
        value_files("defaults"),
        {
            "httpRoute.enabled": "true",
            "httpRoute.parentRefs[0].name": "public",
            "httpRoute.parentRefs[0].namespace": "gateways",
            "httpRoute.hostnames[0]": "users.example.com",
        },
    )
    route = one(objects, "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["hostnames"] == ["users.example.com"]
    rule = route["spec"]["rules"][0]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    # The public port only: /metrics is never routed.
    assert rule["backendRefs"] == [{"name": "user-service", "port": 80}]
    assert not [o for o in helm.template(value_files("defaults")) if o["kind"] == "HTTPRoute"]


def test_http_route_needs_a_parent(helm: Helm) -> None:
    message = refused(helm, value_files("defaults"), {"httpRoute.enabled": "true"})
    assert "httpRoute.parentRefs" in message, message


def test_pdb_lets_drains_evict_unhealthy_pods(helm: Helm) -> None:
    pdb = one(helm.template(value_files("defaults")), "PodDisruptionBudget")
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    pdb = one(
        helm.template(
            value_files("defaults"),
            {"podDisruptionBudget.unhealthyPodEvictionPolicy": "IfHealthyBudget"},
        ),
        "PodDisruptionBudget",
    )
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"
    # Kubernetes 1.25 has no such field: the chart leaves it out there.
    old = one(helm.template(value_files("defaults"), kube_version="1.25.0"), "PodDisruptionBudget")
    assert "unhealthyPodEvictionPolicy" not in old["spec"]


def test_sweep_recommends_only_what_the_chart_accepts(helm: Helm, tmp_path: Any) -> None:
    """The tuning sweep's values snippet counts the budget the way the chart checks it."""
    from loadtests.grid import Knobs
    from loadtests.recommend import Budget, Recommendation
    from loadtests.sweep_report import values_snippet

    knobs = Knobs(workers=2, pool_size=5, max_overflow=5, cache_ttl=300, pool_timeout=1.0)
    most = Budget(1, 100, 5).max_replicas(knobs)
    assert most >= 1
    for replicas, accepted in ((most, True), (most + 1, False)):
        budget = Budget(replicas, 100, 5)
        assert budget.fits(knobs) is accepted
        snippet = tmp_path / f"sweep-{replicas}.yaml"
        snippet.write_text(values_snippet(Recommendation(knobs, budget)))
        if accepted:
            helm.template([*value_files("defaults"), snippet])
        else:
            assert "connection budget exceeded" in refused(
                helm, [*value_files("defaults"), snippet], {}
            )
