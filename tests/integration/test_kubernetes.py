"""deploy/kubernetes checked without a cluster: every core manifest against the Kubernetes API's own OpenAPI
schemas (kubernetes-validate, strict: unknown fields fail), the KEDA ScaledObject against a schema of its CRD
(tests/deploy_schemas; KEDA's CRD cannot be fetched here), and the pieces agreeing with each other: the
ScaledObject scales the Deployment on the group and topic the detector is configured with, the probes hit
the service's real endpoints, the Deployment runs as the image's non-root user."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support import REPO

pytestmark = pytest.mark.integration
K8S = REPO / "deploy" / "kubernetes"
VERSION = "1.30"


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def test_every_core_manifest_is_valid_against_the_kubernetes_schemas():
    listed = kustomization()["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    checked = 0
    for name in listed:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc["apiVersion"].startswith("keda.sh/"):
                continue
            kubernetes_validate.validate(doc, VERSION, strict=True)  # raises ValidationError
            checked += 1
    assert checked == 7


def test_the_validator_fails_on_a_typo():
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSION, strict=True)
    so = yaml.safe_load((K8S / "scaledobject.yaml").read_text())
    so["spec"]["triggers"][0]["metadata"]["lagTreshold"] = "10"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(so, scaledobject_schema())


def scaledobject_schema() -> dict[str, Any]:
    return json.loads((REPO / "tests" / "deploy_schemas" / "keda-scaledobject.schema.json").read_text())


def test_scaledobject_scales_the_detector_on_its_own_group_and_topic():
    so = yaml.safe_load((K8S / "scaledobject.yaml").read_text())
    jsonschema.validate(so, scaledobject_schema())
    # the HPA behaviour KEDA passes on is a Kubernetes HorizontalPodAutoscalerBehavior: check it as one
    behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                    "maxReplicas": 2, "behavior": behavior}}  # fmt: skip
    kubernetes_validate.validate(hpa, VERSION, strict=True)

    config = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    trigger = so["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == config["FLOWSENTINEL_GROUP"]
    assert meta["topic"] == config["FLOWSENTINEL_INPUT_TOPIC"]
    assert meta["bootstrapServers"] == config["FLOWSENTINEL_BOOTSTRAP_SERVERS"]
    assert so["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]


def test_deployment_probes_ports_and_user_match_the_service_and_image():
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    config = yaml.safe_load((K8S / "configmap.yaml").read_text())["data"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = int(config["FLOWSENTINEL_METRICS_PORT"])
    assert container["ports"][0]["containerPort"] == port
    assert config["FLOWSENTINEL_METRICS_HOST"] == "0.0.0.0"  # probes and Prometheus come from outside the pod
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert f"--uid {pod['securityContext']['runAsUser']} " in dockerfile
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert config["FLOWSENTINEL_STATE_DIR"] in mounts
    assert str(Path(config["FLOWSENTINEL_MODEL"]).parent) in mounts
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # SIGTERM's drain (shutdown_timeout_s, default 20 s) ends inside the grace period
    assert pod["terminationGracePeriodSeconds"] > 20
    service = yaml.safe_load((K8S / "service.yaml").read_text())
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    pdb = yaml.safe_load((K8S / "pdb.yaml").read_text())
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
