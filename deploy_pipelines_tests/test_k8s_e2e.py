"""Whole releases through Dagster onto the Kubernetes test bed (pods are Podman containers of the
stack, the Service is served through the stack's nginx): the video platform's way, a rolling
release (maxSurge 1 / maxUnavailable 0, readiness /ready) of the sample service with its
PostgreSQL migrations, database URL from a Secret (secretKeyRef), under loopback user load through
the Service with 0 failed requests; then a release whose pods crash-loop, aborted by the deploy op
with the pod's reason (CrashLoopBackOff, exit code) in the run's failure, the Deployment back on the
previous ReplicaSet's template and users still on the previous version.
Not covered yet: Stockle's blue-green and canary through Dagster (the platform's blue-green is
covered by the contract tests), migrations as a Job, Argo Rollouts / Istio canaries."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
import yaml
from dagster import execute_job, instance_for_test
from dagster._core.definitions.reconstruct import ReconstructableRepository
from kubernetes import client, config

from deploy_pipelines.adapters.k8s_platform import KubernetesPlatform
from deploy_pipelines.loadgen import LoadGenerator
from deploy_pipelines_tests.fixtures_stack import add_tag, demo_repo, load_code_location  # noqa: F401 - demo_repo: its own
from deploy_pipelines_tests.k8s_testbed import TestCluster
from deploy_pipelines_tests.test_release_e2e import monkeypatch_module, step_failure  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.k8s, pytest.mark.timeout(1500)]
REPO_ROOT = Path(__file__).resolve().parents[1]
NS = "video-platform"
JOB = "release_api_k8s"


def catalog_for(tmp: Path) -> Path:
    demo = yaml.safe_load((REPO_ROOT / "examples" / "demo" / "deploy.yaml").read_text())
    app = demo["services"]["app"]
    env = {k: v for k, v in demo["environments"]["demo"].items() if k != "docker"}
    env["kubernetes"] = {"context": "testbed", "namespace": NS, "kubeconfig": {"env": "K8S_E2E_KUBECONFIG"}}
    app["database"]["url"] = {"env": "K8S_E2E_DATABASE_URL"}
    app["verify"] = {"health": {"path": "/health", "readiness": "/ready", "liveness": "/health",
                                "timeout": "60s", "interval": "1s"},
                     "smoke": [{"path": "/api/items", "expect": 200}]}
    app["targets"] = {"k8s": {
        "platform": "kubernetes", "replicas": 2, "port": 80, "container_port": 8080,
        "strategy": {"rolling": {"max_surge": 1, "max_unavailable": 0}},
        "kubernetes": {"deployment": "video-api", "service": "video-api", "service_type": "LoadBalancer",
                       "progress_deadline": "120s", "drain": "1s",
                       "secrets": {"DATABASE_URL": {"secret": "video-db", "key": "url"}}}}}
    path = tmp / "deploy.yaml"
    path.write_text(yaml.safe_dump({"project": "k8s_e2e", "environments": {"k8s": env}, "services": {"api": app}},
                                   sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(local_stack, demo_repo, tmp_path_factory, monkeypatch_module):  # noqa: F811
    stack, env = local_stack
    from deploy_pipelines.stack.postgres import PostgresServer

    pg = PostgresServer.start(stack.root / "postgres")
    pg.create_database("k8s_e2e")
    tmp = tmp_path_factory.mktemp("k8s-e2e")
    with TestCluster(tmp / "cluster", docker_host=env["DEPLOY_DOCKER_HOST"], namespaces=("default", NS),
                     nginx_prefix=Path(env["DEPLOY_NGINX_PREFIX"])) as cluster:
        core = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
        core.create_namespaced_secret(NS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "video-db"},
                                           "data": {"url": base64.b64encode(pg.url("k8s_e2e").encode()).decode()}})
        catalog = catalog_for(tmp)
        for k, v in {**env, "DEMO_REPO": str(demo_repo), "K8S_E2E_DATABASE_URL": pg.url("k8s_e2e"),
                     "K8S_E2E_KUBECONFIG": str(cluster.kubeconfig), "DEPLOY_CATALOG": str(catalog)}.items():
            monkeypatch_module.setenv(k, v)
        load_code_location(catalog)
        (tmp / "home").mkdir()
        with instance_for_test(temp_dir=str(tmp / "home")) as instance:
            yield {"instance": instance, "cluster": cluster, "repo": demo_repo, "core": core,
                   "apps": client.AppsV1Api(config.new_client_from_config(str(cluster.kubeconfig)))}
        assert cluster.errors() == []


def release(world, version: str):
    repo = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs",
                                                working_directory=str(REPO_ROOT))
    return execute_job(repo.get_reconstructable_job(JOB), instance=world["instance"],
                       run_config={"ops": {"scan": {"config": {"version": version}}}})


def serving(url: str, n: int = 20) -> dict[str, int]:
    seen: dict[str, int] = {}
    for _ in range(n):
        v = httpx.get(url + "/health", timeout=5, headers={"Connection": "close"}).headers.get("x-app-version", "?")
        seen[v] = seen.get(v, 0) + 1
    return seen


def test_rolling_release_under_load_then_a_crash_loop_is_aborted_with_the_pods_reason(world):
    first = release(world, "v1.0.0")
    assert first.success, step_failure(world["instance"], first.run_id)
    url = world["cluster"].service_url(NS, "video-api")
    assert serving(url) == {"v1.0.0": 20}

    with LoadGenerator(url + "/api/items", concurrency=3) as load:
        second = release(world, "v1.1.0")
    summary = load.summary()
    assert second.success, step_failure(world["instance"], second.run_id)
    assert summary.total > 200 and summary.failed == 0 and summary.http_errors == 0, summary
    assert set(summary.by_version) == {"v1.0.0", "v1.1.0"}
    assert serving(url) == {"v1.1.0": 20}
    d = world["apps"].read_namespaced_deployment("video-api", NS)
    assert d.metadata.annotations["deploy-pipelines.io/version"] == "v1.1.0"
    assert d.metadata.annotations["deploy-pipelines.io/run-id"] == second.run_id

    add_tag(world["repo"], "v1.5.0", {"release.py": 'import sys\nsys.stderr.write("fatal: no cache at startup\\n")\n'
                                                    "raise SystemExit(3)\n"}, "crashes at start")
    with LoadGenerator(url + "/api/items", concurrency=2) as load:
        third = release(world, "v1.5.0")
    assert not third.success
    step, message = step_failure(world["instance"], third.run_id)
    assert step == "deploy" and "CrashLoopBackOff" in message and "exit code 3" in message, message
    assert load.summary().failed == 0, load.summary()
    assert serving(url) == {"v1.1.0": 20}
    d = world["apps"].read_namespaced_deployment("video-api", NS)
    assert d.spec.template.metadata.annotations["deploy-pipelines.io/version"] == "v1.1.0"
    platform = KubernetesPlatform(service="api", environment="k8s", public_port=80, namespace=NS, context="testbed",
                                  kubeconfig=str(world["cluster"].kubeconfig), deployment="video-api",
                                  service_name="video-api")
    assert platform.current().version == "v1.1.0" and platform.status().instances == {"v1.1.0": 2}
