"""helm lint and helm template over every value set; every object validated by schema."""

from __future__ import annotations

from typing import Any

import pytest

from .chart import (
    NAMESPACE,
    RELEASE,
    SUPPORTED_KUBE,
    VALUE_SETS,
    Helm,
    find,
    is_hook,
    one,
    value_files,
)
from .validation import (
    CRD_FILES,
    has_no_schema,
    is_crd_kind,
    restricted_violations,
    validate_crd_object,
    validate_kubernetes,
)


def render(helm: Helm, cache: dict[Any, Any], name: str, kube: str) -> list[dict[str, Any]]:
    key = (name, kube)
    if key not in cache:
        cache[key] = helm.template(value_files(name), kube_version=kube)
    objects: list[dict[str, Any]] = cache[key]
    return objects


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_strict(helm: Helm, name: str) -> None:
    out = helm.lint(value_files(name))
    assert "0 chart(s) failed" in out, out


@pytest.mark.parametrize("kube", SUPPORTED_KUBE)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_validates(
    helm: Helm, render_cache: dict[Any, Any], name: str, kube: str
) -> None:
    objects = render(helm, render_cache, name, kube)
    assert objects
    for obj in objects:
        if is_crd_kind(obj):
            continue  # validated against the CRD schemas below
        if has_no_schema(obj):
            continue  # HTTPRoute: test_chart_cluster_fit.py checks its shape
        validate_kubernetes(obj, kube)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_prometheus_operator_objects_match_crds(
    helm: Helm, render_cache: dict[Any, Any], schemas_dir: Any, name: str
) -> None:
    objects = render(helm, render_cache, name, SUPPORTED_KUBE[-1])
    crd_objects = [o for o in objects if is_crd_kind(o)]
    for obj in crd_objects:
        assert obj["kind"] in CRD_FILES, obj["kind"]
        validate_crd_object(obj, schemas_dir)
    if name == "everything":
        assert {o["kind"] for o in crd_objects} == {"ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_meets_restricted_pod_security(
    helm: Helm, render_cache: dict[Any, Any], name: str
) -> None:
    objects = render(helm, render_cache, name, SUPPORTED_KUBE[-1])
    problems = [p for obj in objects for p in restricted_violations(obj)]
    assert not problems


def test_restricted_check_catches_a_root_container(
    helm: Helm, render_cache: dict[Any, Any]
) -> None:
    import copy

    deployment = copy.deepcopy(
        one(render(helm, render_cache, "defaults", SUPPORTED_KUBE[-1]), "Deployment")
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["allowPrivilegeEscalation"] = True
    assert restricted_violations(deployment)


def test_strict_validation_catches_an_unknown_field(
    helm: Helm, render_cache: dict[Any, Any]
) -> None:
    import copy

    deployment = copy.deepcopy(
        one(render(helm, render_cache, "defaults", SUPPORTED_KUBE[-1]), "Deployment")
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(AssertionError, match="readinessprobe"):
        validate_kubernetes(deployment, SUPPORTED_KUBE[0])


def test_crd_validation_catches_a_typo(schemas_dir: Any) -> None:
    monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "intervall": "30s"}]},
    }
    with pytest.raises(AssertionError, match="intervall"):
        validate_crd_object(monitor, schemas_dir)


def test_defaults_objects(helm: Helm, render_cache: dict[Any, Any]) -> None:
    objects = render(helm, render_cache, "defaults", SUPPORTED_KUBE[-1])
    kinds = sorted(o["kind"] for o in objects if not is_hook(o))
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "ServiceAccount",
        ]
    )
    # Off by default: they need CRDs or extra infrastructure.
    for kind in ("Ingress", "ServiceMonitor", "PrometheusRule"):
        assert not find(objects, kind)
    assert not [
        o for o in find(objects, "ConfigMap") if "grafana_dashboard" in o["metadata"]["labels"]
    ]


def test_deployment_is_restricted_and_probed(helm: Helm, render_cache: dict[Any, Any]) -> None:
    objects = render(helm, render_cache, "defaults", SUPPORTED_KUBE[-1])
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pod_sc, sc = pod["securityContext"], container["securityContext"]
    # Restricted Pod Security Standard.
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == 10001
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    # Probes on the contract's paths, on the named http port.
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # Writable paths only as emptyDirs.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/tmp", "/run/prometheus"}
    assert all("emptyDir" in volumes[n] for n in mounts.values())
    # Rolls on config and secret changes.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert {"checksum/config", "checksum/secret"} <= set(annotations)
    # Downward API env for OTel resource attributes.
    downward = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container["env"]
        if "valueFrom" in e
    }
    assert downward == {
        "K8S_POD_NAME": "metadata.name",
        "K8S_NAMESPACE_NAME": "metadata.namespace",
        "K8S_NODE_NAME": "spec.nodeName",
    }
    assert pod["topologySpreadConstraints"]
    for constraint in pod["topologySpreadConstraints"]:
        assert (
            constraint["labelSelector"]["matchLabels"]
            == deployment["spec"]["selector"]["matchLabels"]
        )
    # With autoscaling on, the HPA owns the replica count.
    assert "replicas" not in deployment["spec"]


def test_grace_period_outlasts_shutdown(helm: Helm, render_cache: dict[Any, Any]) -> None:
    objects = render(helm, render_cache, "defaults", SUPPORTED_KUBE[-1])
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    config = one(objects, "ConfigMap")["data"]
    pre_stop = int(pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    shutdown = (
        pre_stop
        + float(config["SHUTDOWN_DRAIN_SECONDS"])
        + int(config["GUNICORN_GRACEFUL_TIMEOUT"])
    )
    assert pod["terminationGracePeriodSeconds"] > shutdown


def test_checksum_changes_with_config(helm: Helm, render_cache: dict[Any, Any]) -> None:
    def checksums(extra: dict[str, str]) -> dict[str, str]:
        objects = helm.template(value_files("defaults"), extra)
        annotations: dict[str, str] = one(objects, "Deployment")["spec"]["template"]["metadata"][
            "annotations"
        ]
        return annotations

    base = checksums({})
    assert checksums({"config.LOG_LEVEL": "DEBUG"})["checksum/config"] != base["checksum/config"]
    changed_secret = checksums({"jwt.secretKey": "another-key-of-at-least-thirty-two-chars"})
    assert changed_secret["checksum/secret"] != base["checksum/secret"]
    assert changed_secret["checksum/config"] == base["checksum/config"]


def test_service_and_selectors_target_only_app_pods(
    helm: Helm, render_cache: dict[Any, Any]
) -> None:
    objects = render(helm, render_cache, "everything", SUPPORTED_KUBE[-1])
    app_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = one(objects, "Service")["spec"]["selector"]
    assert one(objects, "Service")["spec"]["ports"][0]["targetPort"] == "http"
    assert selector.items() <= app_labels.items()
    # Job and test pods share name/instance; the component label keeps them out of the Service.
    for kind in ("Job", "Pod"):
        for obj in find(objects, kind):
            template = obj if kind == "Pod" else obj["spec"]["template"]
            assert not selector.items() <= template["metadata"]["labels"].items(), obj["metadata"][
                "name"
            ]
    assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    assert one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"] == selector


def test_network_policy_egress(helm: Helm, render_cache: dict[Any, Any]) -> None:
    def egress_ports(name: str) -> list[set[tuple[Any, str]]]:
        policy = one(render(helm, render_cache, name, SUPPORTED_KUBE[-1]), "NetworkPolicy")
        assert policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
        return [
            {(p["port"], p["protocol"]) for p in rule["ports"]} for rule in policy["spec"]["egress"]
        ]

    dns = {(53, "UDP"), (53, "TCP")}
    assert egress_ports("defaults") == [dns, {(5432, "TCP")}, {(6379, "TCP")}]
    # OTLP only when tracing export is on.
    assert egress_ports("everything") == [dns, {(5432, "TCP")}, {(6379, "TCP")}, {(4317, "TCP")}]


def test_migration_hook_by_default(helm: Helm, render_cache: dict[Any, Any]) -> None:
    objects = render(helm, render_cache, "defaults", SUPPORTED_KUBE[-1])
    job = one(objects, "Job", "migrations")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["activeDeadlineSeconds"] > 0 and job["spec"]["backoffLimit"] >= 0
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["user-service", "migrate"]
    # The hook runs before the release's ConfigMap and Secret exist: it must not need them.
    sources = {ref["secretRef"]["name"] for ref in container["envFrom"]}
    hook_secrets = {o["metadata"]["name"] for o in find(objects, "Secret") if is_hook(o)}
    assert sources <= hook_secrets
    assert int(
        one(objects, "Secret", "migrations")["metadata"]["annotations"]["helm.sh/hook-weight"]
    ) < int(annotations["helm.sh/hook-weight"])
    # Not the namespace's default account: the hook's own, made before the Job.
    account = one(objects, "ServiceAccount", "migrations")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        annotations["helm.sh/hook-weight"]
    )


def test_gitops_renders_plain_job(helm: Helm, render_cache: dict[Any, Any]) -> None:
    objects = render(helm, render_cache, "gitops", SUPPORTED_KUBE[-1])
    job = one(objects, "Job", "migrations")
    assert not is_hook(job)
    assert not [o for o in objects if is_hook(o) and o["kind"] != "Pod"]
    # A new image means a new Job name: a Job's pod template cannot be changed in place.
    other = helm.template(value_files("gitops"), {"image.tag": "9.9.9"})
    assert one(other, "Job", "migrations")["metadata"]["name"] != job["metadata"]["name"]


def test_existing_secret_renders_no_secret(helm: Helm, render_cache: dict[Any, Any]) -> None:
    objects = render(helm, render_cache, "existing-secret", SUPPORTED_KUBE[-1])
    assert not find(objects, "Secret")
    refs = {
        ref["secretRef"]["name"]
        for ref in one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0][
            "envFrom"
        ]
        if "secretRef" in ref
    }
    assert refs == {"user-service-credentials"}
    job = one(objects, "Job", "migrations")
    assert job["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "user-service-credentials"}}
    ]


def test_no_autoscaling_sets_replicas(helm: Helm, render_cache: dict[Any, Any]) -> None:
    objects = render(helm, render_cache, "no-autoscaling", SUPPORTED_KUBE[-1])
    assert not find(objects, "HorizontalPodAutoscaler")
    assert one(objects, "Deployment")["spec"]["replicas"] == 3
    assert one(objects, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": one(objects, "PodDisruptionBudget")["spec"]["selector"],
    }


def test_hpa_has_behavior(helm: Helm, render_cache: dict[Any, Any]) -> None:
    hpa = one(
        render(helm, render_cache, "everything", SUPPORTED_KUBE[-1]), "HorizontalPodAutoscaler"
    )
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert {"scaleUp", "scaleDown"} <= set(hpa["spec"]["behavior"])
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}


def test_monitoring_objects(helm: Helm, render_cache: dict[Any, Any]) -> None:
    objects = render(helm, render_cache, "everything", SUPPORTED_KUBE[-1])
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    service_labels = one(objects, "Service")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()

    rule = one(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    records = {
        r["record"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r
    }
    # everything.yaml sets the objectives; the rule file's own numbers are replaced.
    assert records["user_service:slo_availability_objective"] == "vector(0.995)"
    assert records["user_service:slo_latency_objective"] == "vector(0.95)"
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    for alert in alerts:
        # runbookBaseUrl replaces the base; each alert keeps its own section anchor.
        url = alert["annotations"]["runbook_url"]
        assert url.startswith("https://runbooks.example.org/user-service#"), url


def test_prometheus_templates_survive(helm: Helm, render_cache: dict[Any, Any]) -> None:
    """The rule file's {{ $labels }} templates are Prometheus', not Helm's: kept verbatim."""
    from .chart import CHART_DIR

    source = (CHART_DIR / "files" / "prometheus" / "user-service.rules.yaml").read_text()
    rule = one(render(helm, render_cache, "everything", SUPPORTED_KUBE[-1]), "PrometheusRule")
    rendered = str(rule["spec"])
    for token in ("{{ $labels", "{{ $value"):
        if token in source:
            assert token in rendered


def test_dashboards(helm: Helm, render_cache: dict[Any, Any]) -> None:
    from .chart import CHART_DIR

    files = sorted(p.name for p in (CHART_DIR / "files" / "dashboards").glob("*.json"))
    assert files
    objects = render(helm, render_cache, "everything", SUPPORTED_KUBE[-1])
    maps = [
        o
        for o in find(objects, "ConfigMap")
        if o["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert sorted(k for m in maps for k in m["data"]) == files
    for config_map in maps:
        assert config_map["metadata"]["annotations"]["grafana_folder"] == "user-service"
        assert len(config_map["metadata"]["name"]) <= 63


def test_loadtest_job_targets_service(helm: Helm, render_cache: dict[Any, Any]) -> None:
    objects = render(helm, render_cache, "everything", SUPPORTED_KUBE[-1])
    job = one(objects, "Job", "loadtest")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "loadtests.gate"]
    service = one(objects, "Service")
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert container["args"][:2] == ["--host", url]
    plain = helm.template(value_files("everything"), {"loadtest.asHelmTest": "false"})
    assert not is_hook(one(plain, "Job", "loadtest"))


def test_helm_test_pod_calls_readyz(helm: Helm, render_cache: dict[Any, Any]) -> None:
    objects = render(helm, render_cache, "defaults", SUPPORTED_KUBE[-1])
    pod = one(objects, "Pod", "test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {item["name"]: item["value"] for item in pod["spec"]["containers"][0]["env"]}
    service = one(objects, "Service")
    assert (
        env["READYZ_URL"]
        == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/readyz"
    )
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_native_sleep_action_needs_1_30(helm: Helm) -> None:
    objects = helm.template(value_files("defaults"), {"lifecycle.nativeSleepAction": "true"})
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    validate_kubernetes(one(objects, "Deployment"), SUPPORTED_KUBE[-1])
    with pytest.raises(Exception, match=r"nativeSleepAction needs Kubernetes 1\.30"):
        helm.template(
            value_files("defaults"),
            {"lifecycle.nativeSleepAction": "true"},
            kube_version=SUPPORTED_KUBE[0],
        )


def _install_notes(helm: Helm, *sets: str) -> str:
    """The NOTES a client-side dry-run install prints with every value file (and `--set`s)."""
    if helm.run("version", "--short").stdout.startswith("v3."):
        pytest.skip("Helm 3's install --dry-run=client still asks a cluster for its version")
    from .chart import CHART_DIR

    result = helm.run(
        "install",
        RELEASE,
        str(CHART_DIR),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        *[arg for path in value_files("everything") for arg in ("--values", str(path))],
        *[arg for item in sets for arg in ("--set", item)],
    )
    return result.stdout.split("NOTES:", 1)[1]


def test_notes_render(helm: Helm) -> None:
    notes = _install_notes(helm)
    assert "helm test user-service" in notes
    assert "grafana_dashboard=1" in notes
    assert "Load test (release gate)" in notes and "--logs" in notes
    # What a first install needs next, and what the gate will do to the database.
    assert "Next steps" in notes and "create-admin" in notes
    assert "WARNING: the gate writes to the database this release uses" in notes


def test_notes_say_how_long_seeding_waits_at_the_login_limit(helm: Helm) -> None:
    def notes(users: str, rate: str) -> str:
        shown = _install_notes(helm, f"loadtest.users={users}", f"config.RATE_LIMIT_LOGIN={rate}")
        return " ".join(shown.split())

    # 20 logins at 10 a minute: the first 10 go at once, the next 10 wait one window.
    assert "logs 20 of them in" in notes("20", "10/minute")
    assert "wait out 1 full window(s): about 60 s" in notes("20", "10/minute")
    assert "wait out 0 full window(s): about 0 s" in notes("20", "100/minute")
    assert "wait out 4 full window(s): about 4 s" in notes("50", "10/second")


def _readyz_script(helm: Helm, timeout: str) -> tuple[str, dict[str, str]]:
    objects = helm.template(value_files("defaults"), {"tests.readyzTimeoutSeconds": timeout})
    container = one(objects, "Pod", "test")["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    return container["command"][2], env


def test_helm_test_pod_retries_readyz_for_a_bounded_time(helm: Helm) -> None:
    """The pod's own script, run here against a server that turns ready after a few
    answers, and against one that never does."""
    import http.server
    import subprocess
    import sys
    import threading
    import time

    script, env = _readyz_script(helm, "6")
    assert env["READYZ_URL"].endswith("/readyz") and env["READYZ_TIMEOUT_SECONDS"] == "6"
    calls: list[int] = []

    class Readyz(http.server.BaseHTTPRequestHandler):
        ready_after = 2

        def do_GET(self) -> None:
            calls.append(1)
            ok = len(calls) > self.ready_after
            self.send_response(200 if ok else 503)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}' if ok else b'{"status": "unavailable"}')

        def log_message(self, *args: object) -> None:
            pass

    def run(ready_after: int) -> tuple[subprocess.CompletedProcess[str], float]:
        calls.clear()
        Readyz.ready_after = ready_after
        server = http.server.HTTPServer(("127.0.0.1", 0), Readyz)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started = time.monotonic()
        try:
            result = subprocess.run(
                [sys.executable, "-c", script],
                env={**env, "READYZ_URL": f"http://127.0.0.1:{server.server_port}/readyz"},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            server.shutdown()
        return result, time.monotonic() - started

    result, _ = run(ready_after=2)
    assert result.returncode == 0, result.stdout
    assert "attempt 3: 200" in result.stdout
    result, took = run(ready_after=1000)
    assert result.returncode == 1
    assert "not ready after" in result.stdout
    assert took < 10  # bounded by READYZ_TIMEOUT_SECONDS=6


def _pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod spec the chart renders, by kind/name."""
    specs: dict[str, dict[str, Any]] = {}
    for obj in objects:
        kind = obj.get("kind")
        if kind == "Pod":
            spec = obj["spec"]
        elif kind in ("Deployment", "Job"):
            spec = obj["spec"]["template"]["spec"]
        elif kind == "CronJob":
            spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        else:
            continue
        specs[f"{kind}/{obj['metadata']['name']}"] = spec
    return specs


def test_no_pod_gets_the_namespaces_service_links(helm: Helm, render_cache: dict[Any, Any]) -> None:
    """Kubernetes puts some seven variables per Service of the namespace in each pod unless
    told not to. No pod of the chart reads them; a user can still turn them back on."""
    specs = _pod_specs(render(helm, render_cache, "everything", SUPPORTED_KUBE[-1]))
    assert {name.split("/")[0] for name in specs} == {"Deployment", "Job", "CronJob", "Pod"}
    assert {name: spec.get("enableServiceLinks") for name, spec in specs.items()} == dict.fromkeys(
        specs, False
    )
    linked = _pod_specs(
        helm.template(value_files("everything"), {"enableServiceLinks": "true"}, SUPPORTED_KUBE[-1])
    )
    assert linked.keys() == specs.keys()
    assert all(spec["enableServiceLinks"] is True for spec in linked.values())
