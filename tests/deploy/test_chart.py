"""The Helm chart charts/flow-manager: lint, render and validate every documented values set
(charts/flow-manager/ci/*.yaml, Helm's convention), and check on the rendered objects what must hold.

No cluster is needed: helm comes from npm (tests/deploy/tools.py), kubernetes-validate checks each
rendering offline against the Kubernetes API schemas of KUBERNETES_VERSION.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import CHART, KUBERNETES_VERSION, helm, tool

VALUE_SETS = sorted((CHART / "ci").glob("*.yaml"))
PARENT_CHART = Path(__file__).resolve().parent / "parent-chart"
UID = 10001


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm(), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def render_text(*args: str, chart: Path = CHART) -> str:
    return run_helm("template", "app", str(chart), "--namespace", "flows", *args).stdout


def render(*args: str, chart: Path = CHART) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(*args, chart=chart)) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name)


def args_of(manager: dict[str, Any]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in manager["args"] if a.startswith("--") and "=" in a)


def refused(*args: str) -> str:
    """helm refuses to render these values; returns its message."""
    result = run_helm("template", "app", str(CHART), *args, check=False)
    assert result.returncode != 0, f"helm rendered values it must refuse: {args}\n{result.stdout[:2000]}"
    return result.stderr


def validate(manifests: str) -> None:
    result = subprocess.run(
        [tool("kubernetes-validate", "pip install '.[test]'"), "--strict", "-k", KUBERNETES_VERSION, "-"],
        input=manifests,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"kubernetes-validate refused the rendering:\n{result.stdout}\n{result.stderr}"


def value_set_id(path: Path) -> str:
    return path.stem


def test_every_documented_values_set_is_under_ci() -> None:
    assert [p.stem for p in VALUE_SETS] == ["dind-values", "host-values", "sidecar-values", "standalone-values"]


@pytest.mark.parametrize("values", [None, *VALUE_SETS], ids=lambda v: "defaults" if v is None else value_set_id(v))
def test_lint_strict_and_kubernetes_validate(values: Path | None) -> None:
    extra = ["-f", str(values)] if values else []
    run_helm("lint", "--strict", str(CHART), *extra)
    validate(render_text(*extra))


def test_kubernetes_validate_can_fail() -> None:
    """The validation above is a real check: a Deployment with a misspelt field is refused."""
    broken = render_text().replace("terminationGracePeriodSeconds:", "terminationGracePeriod:")
    result = subprocess.run(
        [tool("kubernetes-validate", "pip install '.[test]'"), "--strict", "-k", KUBERNETES_VERSION, "-"],
        input=broken,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "terminationGracePeriod" in result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUE_SETS, ids=value_set_id)
def test_exactly_one_manager_with_recreate(values: Path) -> None:
    deployment = one(render("-f", str(values)), "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    managers = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "manager"]
    assert len(managers) == 1


@pytest.mark.parametrize(
    "bad", [["--set", "replicaCount=2"], ["--set", "replicaCount=1"], ["--set", "strategy.type=RollingUpdate"], ["--set", "deployment.replicas=2"]]
)
def test_values_that_would_run_two_managers_are_refused(bad: list[str]) -> None:
    message = refused(*bad)
    assert "schema" in message and "additional properties" in message.lower(), message


def test_replica_count_refused_even_without_the_schema() -> None:
    message = refused("--skip-schema-validation", "--set", "replicaCount=2")
    assert "exactly one manager per instance" in message


@pytest.mark.parametrize(
    "bad, needle",
    [
        (["--set", "engine.mode=kind"], "/engine/mode"),
        (["--set", "server.port=70000"], "/server/port"),
        (["--set", "engine.host.socketGroup=0"], "/engine/host/socketGroup"),
        (["--set-json", "security.allowedImages=[]"], "/security/allowedImages"),
        (["--set", "probes.liveness.path=healthz"], "/probes/liveness/path"),
        (["--set", "server.logLevel=verbose"], "/server/logLevel"),
        (["--set", "persistence.size=lots"], "/persistence/size"),
        (["--set", "engine.host.linkDir=relative/dir"], "/engine/host/linkDir"),
        (["--set", "security.maxContainers=-1"], "/security/maxContainers"),
        (["--set", "typo=1"], "'typo' not allowed"),
    ],
)
def test_schema_rejects_bad_values(bad: list[str], needle: str) -> None:
    message = refused(*bad)
    assert "values don't meet the specifications of the schema" in message and needle in message, message


@pytest.mark.parametrize(
    "bad, needle",
    [
        (["--set", "engine.mode=host"], "engine.host.socketGroup"),
        (["--set", "server.listenAddress=127.0.0.1"], "service.enabled=false"),
        (["--set", "deployment.enabled=false"], "service.enabled needs deployment.enabled"),
    ],
)
def test_cross_field_rules_refused_with_a_message(bad: list[str], needle: str) -> None:
    assert needle in refused(*bad)


def test_manager_security_context_is_restricted_in_every_set() -> None:
    for values in VALUE_SETS:
        spec = pod(render("-f", str(values)))
        context = container(spec, "manager")["securityContext"]
        assert context == {
            "runAsUser": UID,
            "runAsGroup": UID,
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }, values.name
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["fsGroup"] == UID
        privileged = [c["name"] for c in spec["containers"] + spec.get("initContainers", []) if c.get("securityContext", {}).get("privileged")]
        assert privileged == (["engine"] if "dind" in values.name or "standalone" in values.name or "sidecar" in values.name else [])


def test_host_mode_needs_no_privileged_container_and_grants_the_socket_group() -> None:
    spec = pod(render("-f", str(CHART / "ci" / "host-values.yaml")))
    assert spec["securityContext"]["supplementalGroups"] == [999]
    init = container(spec, "link-dir-owner")
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert init["command"] == ["chown", f"{UID}:{UID}", "/run/flow-manager/sockets"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    args = args_of(container(spec, "manager"))
    assert volumes["flow-manager-links"]["hostPath"]["path"] == args["socket-host-dir"] == "/var/lib/flow-manager/links"
    assert args["socket-dir"] == "/run/flow-manager/sockets"
    assert volumes["flow-manager-docker-socket"]["hostPath"] == {"path": "/var/run/docker.sock", "type": "Socket"}
    assert args["docker-host"] == "unix:///var/run/docker.sock"


def test_dind_shares_socket_and_links_at_the_same_path() -> None:
    spec = pod(render("-f", str(CHART / "ci" / "dind-values.yaml")))
    manager, engine = container(spec, "manager"), container(spec, "engine")
    mounts = {c["name"]: {m["name"]: m["mountPath"] for m in c["volumeMounts"]} for c in (manager, engine)}
    assert mounts["manager"]["flow-manager-links"] == mounts["engine"]["flow-manager-links"]
    assert mounts["manager"]["flow-manager-engine-socket"] == mounts["engine"]["flow-manager-engine-socket"]
    args = args_of(manager)
    assert args["socket-dir"] == args["socket-host-dir"] == mounts["engine"]["flow-manager-links"]
    assert args["docker-host"] == f"unix://{mounts['engine']['flow-manager-engine-socket']}/docker.sock"
    assert f"--host={args['docker-host']}" in engine["args"] and f"--group={UID}" in engine["args"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["flow-manager-links"] and "emptyDir" in volumes["flow-manager-engine-socket"]
    assert "hostPath" not in str(volumes)


def test_probes_on_health_endpoints() -> None:
    manager = container(pod(render("-f", str(CHART / "ci" / "standalone-values.yaml"))), "manager")
    assert manager["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert manager["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # Listening on loopback only (sidecar): the kubelet cannot reach it, the probe runs inside the container.
    sidecar = container(pod(render("-f", str(CHART / "ci" / "sidecar-values.yaml"))), "manager")
    assert "httpGet" not in sidecar["livenessProbe"]
    assert "http://127.0.0.1:8000/healthz" in sidecar["livenessProbe"]["exec"]["command"][-1]
    assert "http://127.0.0.1:8000/readyz" in sidecar["readinessProbe"]["exec"]["command"][-1]


def test_generated_token_secret_is_mounted_as_the_token_file() -> None:
    docs = render()
    secret = one(docs, "Secret")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 48 and token.isalnum()
    assert render()[0]["data"]["token"] != secret["data"]["token"]  # random without a cluster to look it up in
    spec = pod(docs)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["flow-manager-token"]["secret"] == {
        "secretName": secret["metadata"]["name"],
        "defaultMode": 0o440,
        "items": [{"key": "token", "path": "token"}],
    }
    manager = container(spec, "manager")
    mount = next(m for m in manager["volumeMounts"] if m["name"] == "flow-manager-token")
    assert mount["readOnly"] is True
    assert args_of(manager)["token-file"] == f"{mount['mountPath']}/token"
    assert "env" not in manager  # the token never appears in the pod spec or `docker inspect`


def test_generated_token_survives_upgrades() -> None:
    """lookup finds the Secret of a previous install: its token is reused (helm template cannot look, so
    this checks the template text that does)."""
    text = (CHART / "templates" / "secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in text and 'index $existing.data "token"' in text


def test_existing_secret_is_used_and_none_is_generated() -> None:
    docs = render("-f", str(CHART / "ci" / "host-values.yaml"), "--set", "auth.existingSecretKey=api-token")
    assert not [d for d in docs if d["kind"] == "Secret"]
    volumes = {v["name"]: v for v in pod(docs)["volumes"]}
    assert volumes["flow-manager-token"]["secret"]["secretName"] == "flow-manager-token"
    assert volumes["flow-manager-token"]["secret"]["items"] == [{"key": "api-token", "path": "token"}]


def test_sidecar_of_an_app() -> None:
    docs = render("-f", str(CHART / "ci" / "sidecar-values.yaml"))
    assert not [d for d in docs if d["kind"] in ("Service", "PersistentVolumeClaim")]
    spec = pod(docs)
    assert [c["name"] for c in spec["containers"]] == ["manager", "engine", "app"]
    assert args_of(container(spec, "manager"))["host"] == "127.0.0.1"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["flow-manager-state"] == {"name": "flow-manager-state", "emptyDir": {}}


def test_standalone_service_and_network_policy() -> None:
    docs = render("-f", str(CHART / "ci" / "standalone-values.yaml"))
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "flow-ui"}}}]
    assert not [d for d in render() if d["kind"] == "NetworkPolicy"]  # off by default


def test_state_on_a_kept_claim_or_an_empty_dir() -> None:
    docs = render()
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volumes = {v["name"]: v for v in pod(docs)["volumes"]}
    assert volumes["flow-manager-state"]["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    existing = {v["name"]: v for v in pod(render("--set", "persistence.existingClaim=mine"))["volumes"]}
    assert existing["flow-manager-state"]["persistentVolumeClaim"] == {"claimName": "mine"}


def test_parent_chart_includes_the_named_templates(tmp_path: Path) -> None:
    """Another chart puts flow-manager into its own pod with the flow-manager.sidecar.* templates."""
    parent = tmp_path / "my-app"
    shutil.copytree(PARENT_CHART, parent)
    shutil.copytree(CHART, parent / "charts" / "flow-manager")  # what `helm dependency build` does for file://
    run_helm("lint", "--strict", str(parent))
    text = render_text(chart=parent)
    validate(text)
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert sorted(d["kind"] for d in docs) == ["Deployment", "PersistentVolumeClaim", "Secret"]
    spec = pod(docs)
    assert [c["name"] for c in spec["containers"]] == ["my-app", "manager"]
    assert [c["name"] for c in spec["initContainers"]] == ["link-dir-owner"]
    assert spec["securityContext"]["supplementalGroups"] == [999]
    secret = one(docs, "Secret")["metadata"]["name"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["flow-manager-token"]["secret"]["secretName"] == secret == "app-flow-manager-token"
    assert args_of(container(spec, "manager"))["host"] == "127.0.0.1"
