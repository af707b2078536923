"""Kubernetes in the catalog and the manifests the Kubernetes platform sends, without a cluster:
the example catalogs of the two Kubernetes teams (Stockle, the video platform) pass `check` and
build a KubernetesPlatform per target; mistakes are named (no cluster settings, a secret written
as {env:} on Kubernetes, no Secret for the database URL, both or neither of kubeconfig/in_cluster);
every Deployment and Service the platform builds from a release's workload passes the test bed's
strict validation (the real v1.33 schemas), and an invalid one is rejected (so the check can fail).
Not covered: talking to a cluster (test_platform_contract.py's k8s param, test_k8s_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy_pipelines.adapters import k8s_objects as m
from deploy_pipelines.adapters.k8s_platform import KubernetesPlatform
from deploy_pipelines.adapters.records import Probe, SecretEnv, Workload
from deploy_pipelines.catalog import CatalogError, load_catalog, parse_catalog
from deploy_pipelines.resources import resources_for
from deploy_pipelines.steps.common import DeployTarget
from deploy_pipelines.steps.deploy import workload_for
from deploy_pipelines_tests.k8s_testbed.resources import BY_PATH
from deploy_pipelines_tests.k8s_testbed.store import ApiError
from deploy_pipelines_tests.k8s_testbed.validation import validate

pytestmark = pytest.mark.k8s
REPO = Path(__file__).resolve().parents[1]
EXAMPLES = [REPO / "examples" / "stockle" / "deploy.yaml", REPO / "examples" / "video-platform" / "deploy.yaml"]
DEPLOYMENTS = BY_PATH[("apps", "v1", "deployments")]
SERVICES = BY_PATH[("", "v1", "services")]

MINIMAL = """
project: p
environments:
  prod:
    {env_block}
    registry: 127.0.0.1:5000
    backup_root: /srv/backups
services:
  api:
    repo: /srv/api.git
    image: {{repository: p/api}}
    {database}
    targets:
      prod:
        platform: kubernetes
        port: 80
        {target_extra}
"""


def catalog_text(env_block="kubernetes: {namespace: p, kubeconfig: {env: KUBECONFIG}}", database="", target_extra=""):
    return MINIMAL.format(env_block=env_block, database=database, target_extra=target_extra)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_team_catalogs_pass_check_and_build_kubernetes_platforms(path):
    catalog = load_catalog(path)
    for name, svc in catalog.services.items():
        for env in svc.targets:
            platform = resources_for(catalog, str(path), name, env)["platform"]
            assert isinstance(platform, KubernetesPlatform)
            assert platform.namespace == catalog.environments[env].kubernetes.namespace
            assert platform.deployment == svc.targets[env].kubernetes.deployment


@pytest.mark.parametrize("text, expected", [
    (catalog_text(env_block="prometheus: http://127.0.0.1:9090"), "kubernetes needs environments.prod.kubernetes"),
    (catalog_text(env_block="kubernetes: {namespace: p}"), "exactly one of kubeconfig"),
    (catalog_text(env_block="kubernetes: {namespace: p, in_cluster: true, kubeconfig: {env: K}}"),
     "exactly one of kubeconfig"),
    (catalog_text(target_extra="env: {API_TOKEN: {env: API_TOKEN}}"), "move API_TOKEN to kubernetes.secrets"),
    (catalog_text(database="database: {engine: postgres, url: {env: DB_URL}}"),
     "name its Secret in kubernetes.secrets.DATABASE_URL"),
    (catalog_text(target_extra="kubernetes: {resources: {cpu: lots}}"), "not a Kubernetes quantity"),
    (catalog_text(target_extra="kubernetes: {secrets: {TOKEN: {secret: Bad_Name, key: k}}}"), "secret"),
])
def test_kubernetes_mistakes_are_named(text, expected):
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, Path("deploy.yaml"))
    assert expected in str(err.value) and "prod" in str(err.value)


def test_workload_of_a_kubernetes_target_has_secret_refs_only(tmp_path):
    text = catalog_text(database="database: {engine: postgres, url: {env: DB_URL}}",
                        target_extra="kubernetes: {secrets: {DATABASE_URL: {secret: api-db, key: url}}, "
                                     "resources: {cpu: 250m, memory: 256Mi}}")
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    target = DeployTarget(catalog_path=str(path), service="api", environment="prod")
    w = workload_for(target, "v1.0.0", "r/api@sha256:" + "a" * 64, "sha256:" + "a" * 64, "c0ffee", "run-1")
    assert w.secret_env == (SecretEnv(name="DATABASE_URL", secret="api-db", key="url"),)
    assert w.resources == {"cpu": "250m", "memory": "256Mi"}


def full_workload(**kw) -> Workload:
    return Workload(version="v1.2.3+build.7", image="127.0.0.1:5000/p/api@sha256:" + "b" * 64,
                    digest="sha256:" + "b" * 64, commit="c0ffee", run_id="run-1", container_port=3000, replicas=3,
                    env={"MODE": "prod"}, secret_env=(SecretEnv(name="DATABASE_URL", secret="api-db", key="url"),),
                    readiness=Probe(path="/ready", period=5), liveness=Probe(path="/health", timeout=60),
                    resources={"cpu": "250m", "memory": "256Mi"}, **kw)


def test_manifests_pass_the_real_schemas():
    w = full_workload()
    template = m.pod_template("video-api", "green", w, "service api, environment prod", "gcr-pull", drain=2)
    dep = m.deployment("video-api-green", "video-api", "green", w, 3, template, 1, 0, 600)
    validate(DEPLOYMENTS, json.loads(json.dumps(dep)))
    svc = m.service("video-api", "video-api", {"app": "video-api", m.COLOUR: "green"}, 80, 3000, "LoadBalancer",
                    {"stable": {"version": w.version}})
    validate(SERVICES, svc)
    # What labels cannot hold is in annotations; no secret value anywhere, only the reference.
    assert dep["metadata"]["annotations"][m.VERSION] == "v1.2.3+build.7"
    assert Workload.model_validate_json(dep["metadata"]["annotations"][m.WORKLOAD]) == w
    env = template["spec"]["containers"][0]["env"]
    assert {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "api-db", "key": "url"}}} in env


def test_an_invalid_manifest_is_rejected_as_the_server_would():
    w = full_workload()
    template = m.pod_template("video-api", "blue", w, "here")
    dep = m.deployment("video-api", "video-api", "blue", w, 3, template)
    dep["spec"]["selector"]["matchLabels"]["app"] = "other"      # selector no longer matches the template
    with pytest.raises(ApiError) as err:
        validate(DEPLOYMENTS, dep)
    assert err.value.code == 422


def test_a_secret_without_a_kubernetes_reference_is_refused():
    w = full_workload().model_copy(update={"secret_env": (SecretEnv(name="TOKEN", env="TOKEN"),)})
    with pytest.raises(m.ManifestError, match="TOKEN.*kubernetes.secrets.TOKEN"):
        m.pod_template("video-api", "blue", w, "service api, environment prod")
