"""deploy/kubernetes/: valid for a pinned Kubernetes version (kubernetes-validate, strict, offline), and true to the code.

Schema validity says nothing about whether a probe path exists or a variable is a setting; those facts are read
from the code itself (the route table, Settings, the Dockerfile, the pinned huggingface_hub) and compared.
"""

from __future__ import annotations

import copy
import importlib.metadata
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.server_process import ROOT

KUBERNETES_VERSION = "1.36.0"
FOLDER = ROOT / "deploy" / "kubernetes"
FILES = ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"]
#: Variables of the server container that are not Settings fields (none today: every one must be a setting).
NOT_SETTINGS: set[str] = set()


def load(name: str) -> dict:
    (resource,) = list(yaml.safe_load_all((FOLDER / name).read_text(encoding="utf-8")))
    return resource


def validate(resource: dict) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def pod_spec() -> dict:
    return load("deployment.yaml")["spec"]["template"]["spec"]


def server_container() -> dict:
    (container,) = [container for container in pod_spec()["containers"] if container["name"] == "server"]
    return container


def server_env() -> dict[str, dict]:
    return {item["name"]: item for item in server_container()["env"]}


def test_the_folder_holds_exactly_the_manifests_and_the_readme() -> None:
    assert sorted(path.name for path in FOLDER.iterdir()) == sorted([*FILES, "README.md"])


@pytest.mark.parametrize("name", FILES)
def test_each_manifest_is_valid_for_the_pinned_kubernetes_version(name: str) -> None:
    validate(load(name))


def test_the_command_line_validation_of_the_readme_passes_and_fails() -> None:
    """What README.md tells a user to run; its exit status is what CI would see."""
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION]
    passed = subprocess.run([*command, *(str(FOLDER / name) for name in FILES)], capture_output=True, text=True)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"kubernetes-validate --strict -k {KUBERNETES_VERSION} deploy/kubernetes/*.yaml" in (FOLDER / "README.md").read_text()


def test_the_validation_rejects_a_broken_manifest(tmp_path: Path) -> None:
    deployment = load("deployment.yaml")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 60
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    misplaced = copy.deepcopy(deployment)
    misplaced["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paths"] = "/health"
    for broken in (misspelt, wrong_type, misplaced):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(broken)
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(misspelt))
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION, str(path)]
    assert subprocess.run(command, capture_output=True).returncode != 0


def test_the_models_claim_alternative_is_valid_too() -> None:
    """The PersistentVolumeClaim variant the manifest describes in a comment: no init container, `models` a claim."""
    deployment = load("deployment.yaml")
    spec = deployment["spec"]["template"]["spec"]
    del spec["initContainers"]
    (models,) = [volume for volume in spec["volumes"] if volume["name"] == "models"]
    del models["emptyDir"]
    models["persistentVolumeClaim"] = {"claimName": "gsv-speech-models", "readOnly": True}
    validate(deployment)
    comment = "\n".join(line.strip().lstrip("# ") for line in (FOLDER / "deployment.yaml").read_text().splitlines())
    assert "claimName: gsv-speech-models" in comment and "readOnly: true" in comment


def test_probe_paths_are_get_routes_and_the_ports_are_the_servers() -> None:
    from api.app import Application
    from settings import Settings

    routes = {route.path for route in Application(Settings(), Path("/nonexistent"), []).routes.routes if route.method == "GET"}
    container = server_container()
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startupProbe": "/health",
        "readinessProbe": "/health",
        "livenessProbe": "/livez",
    }
    assert all(probe["path"] in routes for probe in probes.values())
    (port,) = container["ports"]
    assert port["containerPort"] == Settings().port == int(server_env()["PORT"]["value"])
    assert all(probe["port"] == port["name"] for probe in probes.values())
    annotations = load("deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    assert annotations["prometheus.io/path"] == "/metrics" and "/metrics" in routes
    assert load("service.yaml")["spec"]["ports"][0]["targetPort"] == port["name"]


def test_the_env_names_are_settings_and_the_grace_period_covers_drain_and_shutdown() -> None:
    from settings import Settings

    settings = {item.name.upper() for item in fields(Settings)}
    env = server_env()
    assert set(env) - NOT_SETTINGS <= settings, set(env) - settings
    drain, shutdown = int(env["DRAIN_SECONDS"]["value"]), int(env["SHUTDOWN_TIMEOUT"]["value"])
    assert drain > 0 and shutdown > 0
    assert pod_spec()["terminationGracePeriodSeconds"] > drain + shutdown
    # Set in the manifest, the values are Settings' own types and pass its checks.
    values = {name: item["value"] for name, item in env.items() if "value" in item}
    Settings.from_env(values).validate()


def test_the_api_key_secret_is_required_so_a_missing_secret_never_runs_open() -> None:
    """An optional secretKeyRef turns a missing or misnamed Secret into a server without a key, silently."""
    reference = server_env()["API_KEY"]["valueFrom"]["secretKeyRef"]
    assert reference.get("optional", False) is False
    assert f"secret generic {reference['name']} --from-literal={reference['key']}=" in (FOLDER / "README.md").read_text(
        encoding="utf-8"
    )


def test_the_pod_runs_as_the_images_user_with_a_read_only_root_and_writable_volumes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert users == [("1000", "1000")], users
    spec = pod_spec()
    context = spec["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (1000, 1000, 1000)
    assert context["runAsNonRoot"] is True
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for container in [*spec["initContainers"], *spec["containers"]]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
        assert container["image"] == server_container()["image"], container["name"]
        mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
        assert "/tmp" in mounts, container["name"]  # scratch files (engine/models/decoder_graph.py, jieba's cache)
    mounts = {mount["mountPath"]: mount["name"] for mount in server_container()["volumeMounts"]}
    env = server_env()
    # The paths the server writes (CACHE_DIR; HF_HOME and XDG_CACHE_HOME are under the image's ~/.cache) are emptyDirs.
    cache_mount = next(path for path in mounts if env["CACHE_DIR"]["value"].startswith(path + "/"))
    assert "emptyDir" in volumes[mounts[cache_mount]]
    assert re.search(rf"^\s+XDG_CACHE_HOME={re.escape(cache_mount)} ", dockerfile, re.MULTILINE)
    assert re.search(rf"^\s+HF_HOME={re.escape(cache_mount)}/", dockerfile, re.MULTILINE)
    assert mounts[env["MODELS_DIR"]["value"]] == "models"


def test_the_init_container_downloads_with_the_cli_of_the_pinned_huggingface_hub() -> None:
    (init,) = pod_spec()["initContainers"]
    program, subcommand, repo, *options = init["command"]
    local_dir = dict(zip(options[::2], options[1::2], strict=True))["--local-dir"]
    scripts = {entry.name for entry in importlib.metadata.distribution("huggingface_hub").entry_points}
    assert program in scripts and subcommand == "download", (program, scripts)
    pinned = re.search(r"^huggingface_hub==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned and pinned.group(1) == importlib.metadata.version("huggingface_hub")
    env = {item["name"]: item for item in init["env"]}
    assert repo == "$(VOICE_REPO)"
    assert local_dir == f"{init['volumeMounts'][0]['mountPath']}/$(VOICE_NAME)"
    assert init["volumeMounts"][0]["name"] == "models"
    assert {"VOICE_REPO", "VOICE_NAME", "HF_TOKEN"} <= set(env)
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_the_init_container_downloads_a_pinned_commit_of_the_voice() -> None:
    """A branch would follow every push: each pod start could serve other files than the last one."""
    (init,) = pod_spec()["initContainers"]
    program, subcommand, _repo, *options = init["command"]
    assert len(options) % 2 == 0, options
    flags = dict(zip(options[::2], options[1::2], strict=True))
    assert flags.get("--revision") == "$(VOICE_REVISION)", init["command"]
    revision = {item["name"]: item for item in init["env"]}["VOICE_REVISION"]["value"]
    assert re.fullmatch(r"[0-9a-f]{40}", revision), f"VOICE_REVISION is not a commit id: {revision!r}"
    # The pinned huggingface_hub's CLI takes the option (its help, offline).
    cli = Path(sys.executable).with_name(program)
    usage = subprocess.run([str(cli), subcommand, "--help"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "--revision" in usage.stdout, usage.stdout + usage.stderr
    readme = (FOLDER / "README.md").read_text(encoding="utf-8")
    assert "VOICE_REVISION" in readme


def test_service_hpa_and_pdb_point_at_the_deployment() -> None:
    deployment = load("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert load("service.yaml")["spec"]["selector"].items() <= labels.items()
    assert load("pdb.yaml")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = load("hpa.yaml")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    hpa = load("hpa.yaml")["spec"]
    assert hpa["minReplicas"] >= 2  # with the PDB's maxUnavailable 1, one replica always serves
    assert load("pdb.yaml")["spec"]["maxUnavailable"] == 1
    assert "cpu" in server_container()["resources"]["requests"]  # CPU utilisation is relative to the request
