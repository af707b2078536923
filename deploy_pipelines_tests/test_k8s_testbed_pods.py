"""Pods that run for real on the Kubernetes test bed: each Pod is a Podman container of the sample
service image (examples/sample-service on the project's base image, pushed to the local registry).

Covers: a Deployment rolled out with maxSurge 1 / maxUnavailable 0, followed by watch, whose pods
answer on their ports with the version taken from a Secret (secretKeyRef), readiness probes
honoured (availableReplicas never drops below replicas during the roll), pods/log; a crash loop
(CrashLoopBackOff with the exit code in lastState) and an image pull failure (ErrImagePull /
ImagePullBackOff) as pod statuses; dagster-k8s's `execute_k8s_job` running a Job whose pod is a
real container, with env from a Secret and its log in the op's stdout, and a failing Job
(backoffLimit 0) raising with the pod's failure.
A Service served through the stack's nginx carries loopback user load through the roll with no
failed request. Not covered: Argo Rollouts and Istio controllers (not built yet)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config, watch

from deploy_pipelines.loadgen import LoadGenerator
from deploy_pipelines_tests.k8s_testbed import TestCluster

pytestmark = [pytest.mark.slow, pytest.mark.k8s]
REPO_ROOT = Path(__file__).resolve().parents[1]
NS = "stockle"


@pytest.fixture(scope="module")
def image(local_stack):  # noqa: F811
    from deploy_pipelines.adapters.buildah import BuildahBuilder

    _, env = local_stack
    built = BuildahBuilder().build_and_push(REPO_ROOT / "examples" / "sample-service", "Containerfile",
                                            f"{env['DEPLOY_REGISTRY']}/k8s-testbed/sample", "v1",
                                            {"BASE_IMAGE": env["DEPLOY_BASE_IMAGE"]}, {})
    return f"{built.repository}@{built.digest}"


@pytest.fixture(scope="module")
def cluster(local_stack, tmp_path_factory):  # noqa: F811
    _, env = local_stack
    with TestCluster(tmp_path_factory.mktemp("k8s"), docker_host=env["DEPLOY_DOCKER_HOST"],
                     namespaces=("default", NS), nginx_prefix=Path(env["DEPLOY_NGINX_PREFIX"])) as c:
        yield c
        assert c.errors() == []


@pytest.fixture(scope="module")
def core(cluster):
    return client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))


@pytest.fixture(scope="module")
def apps(cluster):
    return client.AppsV1Api(config.new_client_from_config(str(cluster.kubeconfig)))


def secret(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def follow(list_fn, predicate, timeout: float, on_event=None, **kw):
    w = watch.Watch()
    for ev in w.stream(list_fn, NS, timeout_seconds=int(timeout), **kw):
        if on_event:
            on_event(ev["object"])
        if predicate(ev["object"]):
            w.stop()
            return ev["object"]
    raise AssertionError(f"not reached within {timeout}s")


def versions_served(core, selector: str) -> list[str]:
    out = []
    for p in core.list_namespaced_pod(NS, label_selector=selector).items:
        if p.metadata.deletion_timestamp:
            continue
        port = json.loads(p.metadata.annotations["testbed.deploy-pipelines/ports"])["8080"]
        out.append(httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).headers["X-App-Version"])
    return sorted(out)


def test_a_deployment_rolls_out_real_containers(cluster, core, apps, image):
    core.create_namespaced_secret(NS, secret("web-release", {"v1": "v1.0.0", "v2": "v1.1.0"}))
    container = {"name": "web", "image": image, "ports": [{"containerPort": 8080}],
                 "env": [{"name": "APP_VERSION", "valueFrom": {"secretKeyRef": {"name": "web-release", "key": "v1"}}}],
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
                 # Time for the Service's proxy to drop the pod before SIGTERM, as in a real cluster.
                 "lifecycle": {"preStop": {"sleep": {"seconds": 1}}}}
    apps.create_namespaced_deployment(NS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "progressDeadlineSeconds": 300, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}}})
    done = lambda d: any(c.reason == "NewReplicaSetAvailable" for c in d.status.conditions or []) \
        and d.status.updated_replicas == d.status.replicas == d.status.available_replicas == 2 \
        and d.status.observed_generation == d.metadata.generation   # noqa: E731
    follow(apps.list_namespaced_deployment, done, 150, field_selector="metadata.name=web")
    assert versions_served(core, "app=web") == ["v1.0.0", "v1.0.0"]
    core.create_namespaced_service(NS, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                        "spec": {"selector": {"app": "web"},
                                                 "ports": [{"port": 80, "targetPort": 8080}]}})
    url = cluster.service_url(NS, "web") + "/ready"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and httpx.get(url, timeout=5).status_code != 200:
        time.sleep(0.1)
    assert httpx.get(url, timeout=5).headers["X-App-Version"] == "v1.0.0"
    ingress = core.read_namespaced_service("web", NS).status.load_balancer.ingress[0]
    assert url.startswith(f"http://{ingress.ip}:{ingress.ports[0].port}/")
    pod = core.list_namespaced_pod(NS, label_selector="app=web").items[0]
    assert "sample-service v1.0.0 listening on" in core.read_namespaced_pod_log(pod.metadata.name, NS)

    available = []
    users = LoadGenerator(url, concurrency=2).start()
    apps.patch_namespaced_deployment("web", NS, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "APP_VERSION", "valueFrom": {"secretKeyRef": {"name": "web-release",
                                                                                        "key": "v2"}}}]}]}}}})
    d = follow(apps.list_namespaced_deployment, lambda d: d.metadata.generation == 2 and done(d), 150,
               on_event=lambda d: available.append(d.status.available_replicas or 0),
               field_selector="metadata.name=web")
    time.sleep(1.5)                       # the proxy's last reload, then users on v1.1.0 only
    switched = time.time()
    time.sleep(1)
    load = users.stop()
    assert min(available) >= 2            # maxUnavailable 0: never fewer than 2 ready pods
    assert load.total > 50 and load.failed == 0 and load.http_errors == 0, load
    assert users.summary(since=switched).by_version == {"v1.1.0": users.summary(since=switched).total}
    assert versions_served(core, "app=web") == ["v1.1.0", "v1.1.0"]
    rss = apps.list_namespaced_replica_set(NS, label_selector="app=web").items
    assert sorted((r.metadata.annotations["deployment.kubernetes.io/revision"], r.spec.replicas) for r in rss) == \
        [("1", 0), ("2", 2)]
    assert d.status.observed_generation == 2


def test_crash_loop_and_image_pull_failure_show_in_pod_status(core, image, local_stack):  # noqa: F811
    _, env = local_stack
    pod = lambda name, img, cmd=None: {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {  # noqa: E731
        "containers": [{"name": "app", "image": img, **({"command": cmd} if cmd else {})}]}}
    core.create_namespaced_pod(NS, pod("crasher", image, ["python3", "-c", "import sys; sys.exit(3)"]))
    core.create_namespaced_pod(NS, pod("missing", f"{env['DEPLOY_REGISTRY']}/k8s-testbed/absent:v9"))

    def waiting(name, reason):
        def check(p):
            cs = (p.status.container_statuses or [None])[0] if p.metadata.name == name else None
            return cs is not None and cs.state.waiting is not None and cs.state.waiting.reason == reason
        return check

    crashed = follow(core.list_namespaced_pod, waiting("crasher", "CrashLoopBackOff"), 120)
    cs = crashed.status.container_statuses[0]
    assert cs.restart_count >= 1 and cs.last_state.terminated.exit_code == 3 and not cs.ready
    pulled = follow(core.list_namespaced_pod, waiting("missing", "ImagePullBackOff"), 60)
    assert pulled.status.phase == "Pending"
    assert "k8s-testbed/absent:v9" in pulled.status.container_statuses[0].state.waiting.message
    for name in ("crasher", "missing"):
        core.delete_namespaced_pod(name, NS)


def run_migration(name: str, command: list[str], **common):
    """execute_k8s_job inside a real op run (it reads the run from its context)."""
    from dagster import job, op
    from dagster_k8s import execute_k8s_job

    @op(name=f"migrate_{name.replace('-', '_')}")
    def migrate(context):
        execute_k8s_job(context, command=command, k8s_job_name=name, **common)

    @job(name=f"job_{name.replace('-', '_')}")
    def migration():
        migrate()

    from dagster import DagsterInstance

    instance = DagsterInstance.ephemeral()
    result = migration.execute_in_process(raise_on_error=False, instance=instance)
    result.logged = [e.user_message for e in instance.all_logs(result.run_id)]   # the run's whole event log
    return result


def test_execute_k8s_job_runs_a_real_container_and_returns_its_log(cluster, core, image, capfd):
    core.create_namespaced_secret(NS, secret("migrate-db", {"DB_USER": "migrator", "DB_PASSWORD": "s3cret"}))
    common = dict(image=image, namespace=NS, load_incluster_config=False, kubeconfig_file=str(cluster.kubeconfig),
                  env_secrets=["migrate-db"], image_pull_policy="IfNotPresent", timeout=150,
                  job_spec_config={"backoff_limit": 0, "active_deadline_seconds": 120})
    ok = run_migration("migrate-ok", ["python3", "-c", "import os; print('applied 0003_add_sku as', "
                                      "os.environ['DB_USER'], 'password set:', bool(os.environ['DB_PASSWORD']))"],
                       **common)
    out = capfd.readouterr().out
    assert ok.success
    assert "applied 0003_add_sku as migrator password set: True" in out
    assert "s3cret" not in out
    batch = client.BatchV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    job = batch.read_namespaced_job("migrate-ok", NS)
    assert job.status.succeeded == 1 and any(c.type == "Complete" for c in job.status.conditions)

    bad = run_migration("migrate-bad", ["python3", "-c", "import sys; print('0004_drop_column: lock timeout'); "
                                        "sys.exit(1)"], **common)
    assert not bad.success
    failure = next(e for e in bad.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.event_specific_data.error.to_string()
    # The failure names the Job's pod (or the Job), and its log reaches the op: in the step failure
    # when dagster-k8s saw the container terminate while waiting for it to start; else (it saw the pod
    # running first, as on a busy machine) streamed to the op's output and in the "Debug information
    # for failed k8s job" record it logs before re-raising "Encountered failed job pods".
    assert "migrate-bad" in error, error
    told = "\n".join([error, capfd.readouterr().out, *(m for m in bad.logged if "Debug information" in m)])
    assert "0004_drop_column: lock timeout" in told, told[-3000:]
    # backoffLimit 0: one pod, no retry; execute_k8s_job deleted the failed Job (and so its pod).
    assert batch.list_namespaced_job(NS, field_selector="metadata.name=migrate-bad").items == []
