"""Turns rendered Kubernetes objects into processes: the container a pod would run, started
here (or, through another Launcher, in an image), and probed the way the kubelet probes it.

Nothing in this module knows the chart's values: it reads only what `helm template` printed,
so a probe path, port or env var name that the app does not honour fails whoever uses it.

    spec = container_spec(objects, one(objects, "Deployment"), downward={...})
    with started(LocalLauncher(), spec, overrides={}) as proc:
        probe_until(proc, spec.probes["startup"])

pod_lifecycle.run_release() is the whole scenario (migrate, probe, use, terminate).

The Launcher seam: `LocalLauncher` runs the command on this machine from the repo root
(the image's WORKDIR /app holds the same gunicorn.conf.py, alembic.ini and migrations/).
An image launcher runs the same ContainerSpec inside a built image; it only has to return
something with the `Process` methods.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Probe:
    """An httpGet probe with the kubelet's defaults filled in."""

    kind: str
    path: str
    port: int
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class ContainerSpec:
    """What a container in a rendered pod template runs, with its env fully resolved."""

    name: str
    image: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    probes: dict[str, Probe]
    # mountPath -> volume name, for the emptyDirs (the only writable paths under restricted PSS).
    empty_dirs: dict[str, str]
    pre_stop_seconds: float
    termination_grace_seconds: float
    run_as_user: int | None
    read_only_root: bool
    # Env var names whose value came from the downward API (the launcher supplies them).
    downward: dict[str, str] = field(default_factory=dict)


def _decode_secret(obj: dict[str, Any]) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
    data.update(obj.get("stringData") or {})
    return data


def _sources(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    """ConfigMaps and Secrets by (kind, name); hook copies too (the migration hook reads one)."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for obj in objects:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap":
            found[("ConfigMap", name)] = {k: str(v) for k, v in (obj.get("data") or {}).items()}
        elif obj["kind"] == "Secret":
            found[("Secret", name)] = _decode_secret(obj)
    return found


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


def _probe(kind: str, raw: dict[str, Any] | None, ports: dict[str, int]) -> Probe | None:
    if not raw:
        return None
    http = raw.get("httpGet")
    assert http, f"{kind} probe is not httpGet: {raw}"
    port = http["port"]
    if isinstance(port, str):
        assert port in ports, f"{kind} probe names port {port!r}, container has {sorted(ports)}"
        port = ports[port]
    return Probe(
        kind=kind,
        path=http.get("path", "/"),
        port=int(port),
        initial_delay=raw.get("initialDelaySeconds", 0),
        period=raw.get("periodSeconds", 10),
        timeout=raw.get("timeoutSeconds", 1),
        success_threshold=raw.get("successThreshold", 1),
        failure_threshold=raw.get("failureThreshold", 3),
    )


def _pre_stop_seconds(container: dict[str, Any]) -> float:
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = (pre_stop.get("exec") or {}).get("command") or []
    if command[:1] == ["sleep"] and len(command) == 2:
        return float(command[1])
    assert not pre_stop, f"preStop hook this harness cannot simulate: {pre_stop}"
    return 0.0


def container_spec(
    objects: list[dict[str, Any]],
    obj: dict[str, Any],
    container_name: str | None = None,
    downward: dict[str, str] | None = None,
) -> ContainerSpec:
    """Resolve one container of a Deployment/Job/Pod the way the kubelet builds its env:
    envFrom sources in order, then env entries (which win), fieldRefs from `downward`."""
    pod = _pod_spec(obj)
    containers = pod["containers"]
    if container_name is None:
        assert len(containers) == 1, "several containers: name the one to run"
        container = containers[0]
    else:
        container = next(c for c in containers if c["name"] == container_name)

    sources = _sources(objects)
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind, ref = (
            ("ConfigMap", source["configMapRef"])
            if "configMapRef" in source
            else ("Secret", source["secretRef"])
        )
        source_key = (kind, ref["name"])
        if source_key not in sources:
            assert ref.get("optional"), f"envFrom {kind} {ref['name']} is not rendered"
            continue
        prefix = source.get("prefix", "")
        env.update({prefix + k: v for k, v in sources[source_key].items()})

    downward = downward or {}
    from_downward: dict[str, str] = {}
    for entry in container.get("env") or []:
        name = entry["name"]
        if "value" in entry:
            env[name] = str(entry["value"])
            continue
        value_from = entry["valueFrom"]
        if "fieldRef" in value_from:
            path = value_from["fieldRef"]["fieldPath"]
            assert path in downward, f"env {name}: no value given for downward field {path}"
            env[name] = downward[path]
            from_downward[name] = path
        else:
            ref = value_from.get("configMapKeyRef") or value_from.get("secretKeyRef")
            kind = "ConfigMap" if "configMapKeyRef" in value_from else "Secret"
            env[name] = sources[(kind, ref["name"])][ref["key"]]

    ports = {
        p.get("name", str(p["containerPort"])): int(p["containerPort"])
        for p in container.get("ports") or []
    }
    probes: dict[str, Probe] = {}
    for probe_kind, probe_key in (
        ("startup", "startupProbe"),
        ("liveness", "livenessProbe"),
        ("readiness", "readinessProbe"),
    ):
        probe = _probe(probe_kind, container.get(probe_key), ports)
        if probe:
            probes[probe_kind] = probe

    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    empty_dirs = {
        m["mountPath"]: m["name"]
        for m in container.get("volumeMounts") or []
        if "emptyDir" in volumes.get(m["name"], {})
    }
    security = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
    return ContainerSpec(
        name=container["name"],
        image=container["image"],
        argv=[*(container.get("command") or []), *(container.get("args") or [])],
        env=env,
        ports=ports,
        probes=probes,
        empty_dirs=empty_dirs,
        pre_stop_seconds=_pre_stop_seconds(container),
        termination_grace_seconds=float(pod.get("terminationGracePeriodSeconds", 30)),
        run_as_user=security.get("runAsUser"),
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        downward=from_downward,
    )


# --------------------------------------------------------------------------- launching


class Process(Protocol):
    """A started container, however it was started."""

    log_path: Path
    # Env values the launcher changed from the rendered ones, and why: shown in failures.
    overrides: dict[str, str]

    def url(self, port: int, path: str) -> str: ...
    def terminate(self) -> None: ...  # what the kubelet sends after preStop: SIGTERM
    def kill(self) -> None: ...
    def wait(self, timeout: float) -> int | None: ...
    def poll(self) -> int | None: ...
    def log_tail(self, lines: int = 60) -> str: ...


class Launcher(Protocol):
    def start(self, spec: ContainerSpec, overrides: dict[str, str]) -> Process: ...


def venv_bin() -> Path:
    """The project's venv bin: stands for /opt/venv/bin, which the image puts first on PATH."""
    return Path(os.environ.get("VIRTUAL_ENV", REPO_ROOT / ".venv")) / "bin"


@dataclass
class LocalProcess:
    popen: subprocess.Popen[bytes]
    log_path: Path
    overrides: dict[str, str]
    host: str = "127.0.0.1"
    # Its HOME and emptyDir stand-ins: removed once the process is gone.
    scratch: Path | None = None

    def url(self, port: int, path: str) -> str:
        return f"http://{self.host}:{port}{path}"

    def terminate(self) -> None:
        self.popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the process group if it still runs, and remove the scratch directory."""
        if self.popen.poll() is None:
            # The whole process group: gunicorn's workers must not outlive a failed test.
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def poll(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class LocalLauncher:
    """Runs the container's command on this machine, cwd = repo root (the image's WORKDIR).

    The process gets the rendered env and nothing of the caller's environment, except:
    PATH (the venv's bin first, as /opt/venv/bin is in the image), HOME (a temp dir), and
    each emptyDir mount path that an env value names (PROMETHEUS_MULTIPROC_DIR=/run/prometheus)
    replaced by a fresh temp dir, as the host's path is neither empty nor ours. Every such
    change is recorded in `Process.overrides`, next to the caller's own `overrides`.
    """

    def __init__(self, workdir: Path = REPO_ROOT, log_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="rendered-logs-"))

    def start(self, spec: ContainerSpec, overrides: dict[str, str]) -> LocalProcess:
        scratch = Path(tempfile.mkdtemp(prefix=f"{spec.name}-"))
        env = dict(spec.env)
        changed: dict[str, str] = {}
        for mount_path, volume in spec.empty_dirs.items():
            if mount_path == "/tmp":
                continue  # the host's /tmp is a writable tmp dir already
            stand_in = scratch / volume
            stand_in.mkdir()
            for key, value in env.items():
                if value == mount_path:
                    env[key] = str(stand_in)
                    changed[key] = f"{stand_in} (stands for emptyDir {volume} at {mount_path})"
        env.update(overrides)
        changed.update(overrides)
        env["PATH"] = f"{venv_bin()}:/usr/local/bin:/usr/bin:/bin"
        env["HOME"] = str(scratch)
        log_path = self.log_dir / f"{spec.name}-{int(time.time() * 1000)}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            spec.argv,
            env=env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so kill() reaches the workers
        )
        log.close()
        return LocalProcess(popen=popen, log_path=log_path, overrides=changed, scratch=scratch)


@contextmanager
def started(
    launcher: Launcher, spec: ContainerSpec, overrides: dict[str, str]
) -> Iterator[Process]:
    proc = launcher.start(spec, overrides)
    try:
        yield proc
    finally:
        proc.kill()


def run_to_completion(
    launcher: Launcher, spec: ContainerSpec, overrides: dict[str, str], deadline: float
) -> tuple[int | None, Process]:
    """A Job's container: run it, wait up to `deadline` (activeDeadlineSeconds)."""
    proc = launcher.start(spec, overrides)
    code = proc.wait(deadline)
    proc.kill()  # past its deadline it still runs; either way its scratch goes
    return code, proc


# --------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class ProbeResult:
    status: int | None  # None: connection failed or timed out
    body: str
    elapsed: float

    @property
    def ok(self) -> bool:
        # The kubelet counts 200-399 as success.
        return self.status is not None and 200 <= self.status < 400


def http_get(url: str, timeout: float) -> ProbeResult:
    start = time.monotonic()
    request = urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.37"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return ProbeResult(
                response.status, response.read().decode(errors="replace"), time.monotonic() - start
            )
    except urllib.error.HTTPError as error:
        return ProbeResult(
            error.code, error.read().decode(errors="replace"), time.monotonic() - start
        )
    except (urllib.error.URLError, OSError, TimeoutError):
        return ProbeResult(None, "", time.monotonic() - start)


class ProbeFailedError(AssertionError):
    pass


def probe_until(proc: Process, probe: Probe, *, already_waited: float = 0) -> list[ProbeResult]:
    """Probe as the kubelet does: wait initialDelaySeconds, then one GET per period with the
    probe's timeout; pass after successThreshold successes in a row, fail after
    failureThreshold failures in a row (or when the process exits)."""
    delay = max(0.0, probe.initial_delay - already_waited)
    time.sleep(delay)
    results: list[ProbeResult] = []
    successes = failures = 0
    while True:
        tick = time.monotonic()
        exited = proc.poll()
        if exited is not None:
            raise ProbeFailedError(
                f"{probe.kind} probe: process exited with {exited} before passing\n"
                f"{proc.log_tail()}"
            )
        result = http_get(proc.url(probe.port, probe.path), probe.timeout)
        results.append(result)
        if result.ok:
            successes, failures = successes + 1, 0
            if successes >= probe.success_threshold:
                return results
        else:
            successes, failures = 0, failures + 1
            if failures >= probe.failure_threshold:
                raise ProbeFailedError(
                    f"{probe.kind} probe GET {probe.path} on port {probe.port} failed "
                    f"{failures} times in a row (last: {result.status} {result.body[:200]!r})\n"
                    f"overrides: {proc.overrides}\n{proc.log_tail()}"
                )
        time.sleep(max(0.0, probe.period - (time.monotonic() - tick)))
