"""The chart's distributed load test: an Indexed Job whose pod 0 is the Locust master (the
verdict) and the others workers reaching it through a headless Service."""

from __future__ import annotations

import sys

from loadtests.distributed import command
from scripts.chart.helm import Helm

from .chart import find, one, value_files


def test_workers_make_an_indexed_job_with_a_master_address(helm: Helm) -> None:
    objects = helm.template(value_files("everything"), {"loadtest.workers": "2"})
    job = one(objects, "Job", "loadtest")
    name = job["metadata"]["name"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == name
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "loadtests.distributed"]
    args = container["args"]
    assert args[:5] == ["--workers", "2", "--master-host", f"{name}-0.{name}", "--"]
    assert args[5] == "--host"
    assert {"name": "locust-master", "containerPort": 5557} in container["ports"]
    (service,) = find(objects, "Service", "loadtest")
    assert service["metadata"]["name"] == name
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "loadtest"
    for key, value in service["spec"]["selector"].items():
        assert pod_labels(job)[key] == value
    # helm test creates hooks in weight order: the Service exists before the Job.
    assert int(service["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


def pod_labels(job: dict[str, object]) -> dict[str, str]:
    labels: dict[str, str] = job["spec"]["template"]["metadata"]["labels"]  # type: ignore[index]
    return labels


def test_no_workers_keep_the_single_process_job(helm: Helm) -> None:
    objects = helm.template(value_files("everything"))
    job = one(objects, "Job", "loadtest")
    assert "completionMode" not in job["spec"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "loadtests.gate"
    assert not find(objects, "Service", "loadtest")


def test_pod_zero_runs_the_gate_as_master_and_the_others_are_workers() -> None:
    gate = ["--host", "http://svc:80", "--users", "50"]
    master = command(0, 2, "job-0.job", 5557, gate)
    assert master[:3] == [sys.executable, "-m", "loadtests.gate"]
    assert master[3:7] == gate
    assert master[-4:] == ["--expect-workers", "2", "--master-bind-port", "5557"]
    worker = command(2, 2, "job-0.job", 5557, gate)
    assert worker[1:3] == ["-m", "locust"]
    assert "--worker" in worker
    assert worker[worker.index("--master-host") + 1] == "job-0.job"
