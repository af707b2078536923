"""The Kubernetes side of the platform contract (test_platform_contract.py): one test-bed cluster per
module (pods as Podman containers of the stack, Services through the stack's nginx), a fresh
target per test, and the inspections the contract's Docker checks make, done on the cluster."""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path

import pytest
from kubernetes import client, config

from deploy_pipelines.adapters.k8s_platform import KubernetesPlatform
from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.k8s_testbed import TestCluster

NAMESPACE = "contract"
SECRET = "contract-secrets"


@pytest.fixture(scope="module")
def k8s_cluster(local_stack, tmp_path_factory):  # noqa: F811 - local_stack comes from the test module
    _, env = local_stack
    with TestCluster(tmp_path_factory.mktemp("k8s"), docker_host=env["DEPLOY_DOCKER_HOST"],
                     namespaces=("default", NAMESPACE), nginx_prefix=Path(env["DEPLOY_NGINX_PREFIX"])) as cluster:
        yield cluster
        assert cluster.errors() == []


def k8s_platform(cluster: TestCluster, planted: str) -> KubernetesPlatform:
    core = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    if not core.list_namespaced_secret(NAMESPACE, field_selector=f"metadata.name={SECRET}").items:
        core.create_namespaced_secret(NAMESPACE, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "type": "Opaque",
            "data": {"api-token": base64.b64encode(planted.encode()).decode()}})
    service = f"c{secrets.token_hex(3)}"
    return KubernetesPlatform(service=service, environment="contract", public_port=free_port(),
                              namespace=NAMESPACE, kubeconfig=str(cluster.kubeconfig), context=cluster.context,
                              service_type="LoadBalancer", replicas=1, drain=1.0, propagation=1.5,
                              rollout_timeout=240)


def remove_target(p: KubernetesPlatform) -> None:
    for colour in ("blue", "green"):
        try:
            p.apps.delete_namespaced_deployment(p._deployment_name(colour), p.namespace)   # noqa: SLF001
        except client.exceptions.ApiException:
            pass
    for name in (p.svc, f"{p.svc}-preview", f"{p.svc}-stable"):
        try:
            p.core.delete_namespaced_service(name, p.namespace)
        except client.exceptions.ApiException:
            pass


def _pods(p: KubernetesPlatform) -> list[dict]:
    return [p.api.sanitize_for_serialization(x) for x in
            p.core.list_namespaced_pod(p.namespace, label_selector=f"app={p.app}").items
            if not x.metadata.deletion_timestamp]


def instance_envs(p: KubernetesPlatform) -> list[tuple[str, dict]]:
    """(version, plain env) of each running pod, from the pod specs the cluster holds."""
    out = []
    for pod in _pods(p):
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env") or []}
        out.append((env["APP_VERSION"], env))
    return out


def everything_visible(p: KubernetesPlatform) -> list[str]:
    """Every object of the target as the API serves it (specs, annotations, status)."""
    seen = [json.dumps(pod) for pod in _pods(p)]
    for colour in ("blue", "green"):
        d = p._read(p.apps.read_namespaced_deployment, p._deployment_name(colour))   # noqa: SLF001
        seen.append(json.dumps(d))
    seen += [json.dumps(p._read(p.core.read_namespaced_service, n))                   # noqa: SLF001
             for n in (p.svc, f"{p.svc}-preview", f"{p.svc}-stable")]
    return seen


def environ_of_an_instance(cluster: TestCluster, p: KubernetesPlatform) -> list[str]:
    """/proc/1/environ of one pod's container, as the app's own user reads it."""
    pod = _pods(p)[0]
    from deploy_pipelines_tests.k8s_testbed.kubelet import LABEL
    for c in cluster.kubelet.client.containers.list(filters={"label": f"{LABEL}={cluster.id}"}):
        if pod["metadata"]["name"] in c.name or pod["metadata"]["name"] in json.dumps(c.labels):
            # `podman exec` can fail under load (CI at 4654c7b: one read without the variable); the
            # read is the test's inspection, not the outcome, so it is retried, and a failure says
            # what came back (the variable names and exit code, never the values).
            for _ in range(5):
                code, out = c.exec_run(["cat", "/proc/1/environ"], user="65534")
                entries = out.decode(errors="replace").split("\0")
                if code == 0 and any(e.startswith("API_TOKEN=") for e in entries):
                    return entries
                time.sleep(1)
            raise AssertionError(f"pod {pod['metadata']['name']}: exec exit {code}, variables "
                                 f"{sorted(e.split('=', 1)[0] for e in entries if e)}")
    raise AssertionError(f"no container for pod {pod['metadata']['name']}")
