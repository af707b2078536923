"""The Kubernetes objects the Kubernetes platform sends, as plain dicts (what `kubectl apply` would
read): a Deployment per colour, the Services in front of them. Built here so the platform module
holds only the rollout logic, and so a test can validate each manifest on its own.

Labels select (app, colour); everything a label cannot hold (versions with `+`, digests, the
Workload JSON) is an annotation. Secrets are `secretKeyRef`s only: the manifest never holds a value."""

from __future__ import annotations

import json
import math

from deploy_pipelines.adapters.records import SecretEnv, Workload

PREFIX = "deploy-pipelines.io/"
COLOUR = PREFIX + "colour"
VERSION, DIGEST, RUN_ID, COMMIT, WORKLOAD = (PREFIX + k for k in ("version", "digest", "run-id", "commit", "workload"))
STATE = PREFIX + "state"
MANAGED_BY = {"app.kubernetes.io/managed-by": "deploy-pipelines"}


class ManifestError(ValueError):
    pass


def release_annotations(workload: Workload, with_workload: bool = True) -> dict[str, str]:
    out = {VERSION: workload.version, DIGEST: workload.digest, RUN_ID: workload.run_id, COMMIT: workload.commit}
    if with_workload:
        out[WORKLOAD] = workload.model_dump_json()
    return out


def _secret_ref(s: SecretEnv, where: str) -> dict:
    if not (s.secret and s.key):
        raise ManifestError(f"{where}: secret {s.name} needs a Kubernetes Secret reference "
                            f"(targets.<env>.kubernetes.secrets.{s.name}: {{secret: NAME, key: KEY}}); "
                            "the Kubernetes platform never receives secret values")
    return {"name": s.name, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": s.key}}}


def _probe(path: str, port: int, period: float, failure_threshold: int, timeout: float | None = None) -> dict:
    probe = {"httpGet": {"path": path, "port": port}, "periodSeconds": max(1, int(period)),
             "failureThreshold": max(1, failure_threshold), "timeoutSeconds": 2}
    if timeout is not None:
        # Liveness must not kill a pod that is still starting: it may take `timeout` to be ready.
        probe["initialDelaySeconds"] = int(timeout)
    return probe


def pod_template(app: str, colour: str, workload: Workload, where: str, image_pull_secret: str | None = None,
                 drain: float = 2.0) -> dict:
    port = workload.container_port
    env = [{"name": k, "value": v} for k, v in sorted(workload.env.items())]
    env += [{"name": "PORT", "value": str(port)}, {"name": "APP_VERSION", "value": workload.version}]
    env += [_secret_ref(s, where) for s in workload.secret_env]
    container = {
        "name": "app", "image": workload.image, "ports": [{"containerPort": port, "name": "http"}], "env": env,
        "readinessProbe": _probe(workload.readiness.path, port, workload.readiness.period,
                                 workload.readiness.failure_threshold),
        # Endpoints drop a terminating pod at once, proxies a moment later: it keeps serving meanwhile.
        "lifecycle": {"preStop": {"sleep": {"seconds": max(1, math.ceil(drain))}}},
    }
    if workload.liveness:
        container["livenessProbe"] = _probe(workload.liveness.path, port, workload.liveness.period,
                                            workload.liveness.failure_threshold, workload.liveness.timeout)
    if workload.resources:
        container["resources"] = {"requests": dict(workload.resources),
                                  **({"limits": {"memory": workload.resources["memory"]}}
                                     if "memory" in workload.resources else {})}
    spec: dict = {"containers": [container], "terminationGracePeriodSeconds": int(max(30, drain + 10))}
    if image_pull_secret:
        spec["imagePullSecrets"] = [{"name": image_pull_secret}]
    return {"metadata": {"labels": {"app": app, COLOUR: colour},
                         "annotations": release_annotations(workload, with_workload=False)},
            "spec": spec}


def deployment(name: str, app: str, colour: str, workload: Workload, replicas: int, template: dict,
               max_surge: int = 1, max_unavailable: int = 0, progress_deadline: float = 600) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": app, COLOUR: colour, **MANAGED_BY},
                         "annotations": release_annotations(workload)},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": int(progress_deadline),
                     "selector": {"matchLabels": {"app": app, COLOUR: colour}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}},
                     "template": template}}


def service(name: str, app: str, selector: dict, port: int, target_port: int, service_type: str = "ClusterIP",
            state: dict | None = None) -> dict:
    meta: dict = {"name": name, "labels": {"app": app, **MANAGED_BY}}
    if state is not None:
        meta["annotations"] = {STATE: json.dumps(state, sort_keys=True)}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": service_type, "selector": selector,
                     "ports": [{"name": "http", "port": port, "targetPort": target_port, "protocol": "TCP"}]}}
