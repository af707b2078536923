"""How runs are placed on Kubernetes: values.yaml's runK8sConfig (the defaults of every run pod)
merged with each job kind's `dagster-k8s/config` tag (k8s/job-tags.yaml) by dagster-k8s's own
code, and the run Job it builds validated as the API server would (the test bed's strict
validation); and k8s/rbac.yaml granting the run pods what the platform needs in exactly the
namespaces the catalogs deploy to, nothing cluster-wide, no Secrets.
Not covered: a real `helm install` or K8sRunLauncher launch (no cluster here; the chart's
values schema is checked in test_k8s.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (USER_DEFINED_K8S_CONFIG_KEY, DagsterK8sJobConfig, UserDefinedDagsterK8sConfig,
                             construct_dagster_k8s_job, get_user_defined_k8s_config)
from kubernetes import client

from deploy_pipelines_tests.k8s_testbed.resources import BY_PATH
from deploy_pipelines_tests.k8s_testbed.store import ApiError
from deploy_pipelines_tests.k8s_testbed.validation import prune_nulls, validate

pytestmark = pytest.mark.k8s
REPO = Path(__file__).resolve().parents[1]
# The namespaces of the two Kubernetes systems (SEED_DIGEST: Stockle, the video platform) whose
# catalogs are being written; any namespace a catalog in examples/ names joins them.
TEAM_NAMESPACES = {"stockle", "video-platform"}
JOBS = BY_PATH[("batch", "v1", "jobs")]


# The chart's instance ConfigMap hands runK8sConfig to the launcher under these keys.
CHART_KEYS = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
              "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
              "jobMetadata": "job_metadata"}


def run_job(tag: dict | None) -> dict:
    """The run Job the K8sRunLauncher would create: launcher defaults merged with the job's tag
    (as a run tag: a JSON string) by dagster-k8s's own merge."""
    values = yaml.safe_load((REPO / "k8s/values.yaml").read_text())
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    defaults = UserDefinedDagsterK8sConfig.from_dict({CHART_KEYS[k]: v for k, v in launcher["runK8sConfig"].items()})
    context = K8sContainerContext(run_k8s_config=defaults)
    if tag is not None:
        context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(
            {USER_DEFINED_K8S_CONFIG_KEY: json.dumps(tag)})))
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="registry.example.internal/platform/deploy-pipelines:0.1.0",
                            dagster_home="/opt/dagster/dagster_home", instance_config_map="dagster-instance",
                            env_secrets=[s["name"] for s in launcher["envSecrets"]]),
        args=["dagster", "api", "execute_run", "{}"], job_name="dagster-run-0a1b2c3d",
        user_defined_k8s_config=context.run_k8s_config, component="run_worker")
    return {"apiVersion": "batch/v1", "kind": "Job",
            **prune_nulls(client.ApiClient().sanitize_for_serialization(job))}


@pytest.mark.parametrize("kind", [None, "release", "rollback"])
def test_run_jobs_are_valid_kubernetes_jobs(kind):
    tags = yaml.safe_load((REPO / "k8s/job-tags.yaml").read_text())
    job = run_job(tags[kind][USER_DEFINED_K8S_CONFIG_KEY] if kind else None)
    validate(JOBS, job)                                  # raises the API server's 400/422 if not
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert spec["backoffLimit"] == 0 and pod["serviceAccountName"] == "deploy-pipelines-runner"
    resources = pod["containers"][0]["resources"]
    expected = {None: "512Mi", "release": "1Gi", "rollback": "512Mi"}[kind]
    assert resources["requests"]["memory"] == expected
    if kind:
        assert spec["template"]["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"


def test_a_broken_tag_makes_an_invalid_job():
    job = run_job({"container_config": {"ports": [{"container_port": 70000}]}})    # past 65535
    with pytest.raises(ApiError) as exc:
        validate(JOBS, job)
    assert exc.value.code == 422 and "spec.template.spec.containers[0].ports[0].containerPort" in exc.value.message


def catalog_namespaces() -> set[str]:
    names = set()
    for catalog in REPO.glob("examples/*/deploy.yaml"):
        doc = yaml.safe_load(catalog.read_text()) or {}
        for env in (doc.get("environments") or {}).values():
            ns = ((env or {}).get("kubernetes") or {}).get("namespace")
            if isinstance(ns, str):
                names.add(ns)
    return names


def test_rbac_is_limited_to_the_catalog_namespaces():
    docs = [d for d in yaml.safe_load_all((REPO / "k8s/rbac.yaml").read_text()) if d]
    assert not [d for d in docs if d["kind"].startswith("Cluster")]
    roles = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == TEAM_NAMESPACES | catalog_namespaces()
    runner = next(d for d in docs if d["kind"] == "ServiceAccount")
    for ns, binding in bindings.items():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": roles[ns]["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": runner["metadata"]["name"],
                                        "namespace": runner["metadata"]["namespace"]}]
    for role in roles.values():
        granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
                   for v in rule["verbs"]}
        assert not [x for x in granted if "*" in x or x[1] == "secrets"]
        # What the platform and migrations do: patch and watch Deployments, switch Service
        # selectors, run Jobs and read their pods' logs, walk Rollouts, set Istio weights.
        assert {("apps", "deployments", "patch"), ("apps", "deployments", "watch"), ("", "services", "patch"),
                ("batch", "jobs", "create"), ("batch", "jobs", "delete"), ("", "pods/log", "get"),
                ("argoproj.io", "rollouts", "patch"), ("networking.istio.io", "virtualservices", "patch")} <= granted
