"""Controllers that act as kube-controller-manager's do, on the test bed's store:

- Deployment (pkg/controller/deployment): one ReplicaSet per pod template (pod-template-hash),
  RollingUpdate scaled by the maxSurge / maxUnavailable arithmetic of rolling.go (surge rounded
  up, unavailable down, unhealthy old replicas cleaned up first), Recreate, the revision
  annotation, status counts, and the Available / Progressing conditions of progress.go including
  ProgressDeadlineExceeded;
- ReplicaSet: pods created / deleted to spec.replicas (not-ready ones deleted first);
- Job: one pod at a time up to completions, backoffLimit, activeDeadlineSeconds, and the
  SuccessCriteriaMet/Complete or FailureTarget/Failed conditions;
- garbage collection of dependents whose owner is gone; Endpoints of each Service's pods.
Not modelled: minReadySeconds beyond ready-since, pod disruption budgets, HPA, scheduling."""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import threading
import time
from datetime import datetime, timezone

from deploy_pipelines_tests.k8s_testbed.resources import BY_PATH
from deploy_pipelines_tests.k8s_testbed.store import ApiError, Store, matches, now, selector_of

PODS, RS, DEPLOY, JOBS = (BY_PATH[k] for k in (("", "v1", "pods"), ("apps", "v1", "replicasets"),
                                             ("apps", "v1", "deployments"), ("batch", "v1", "jobs")))
SERVICES, ENDPOINTS = BY_PATH[("", "v1", "services")], BY_PATH[("", "v1", "endpoints")]
REVISION = "deployment.kubernetes.io/revision"
PORTS_ANNOTATION = "testbed.deploy-pipelines/ports"


def _ts(text: str | None) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp() if text else 0.0


def owned_by(obj: dict, owner: dict) -> bool:
    return any(r.get("uid") == owner["metadata"]["uid"] for r in obj["metadata"].get("ownerReferences") or [])


def owner_ref(owner: dict) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def template_hash(template: dict) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions", []))


def pod_active(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def resolve(value, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value)


def condition(type_: str, status: str, reason: str, message: str, old: list[dict]) -> dict:
    prev = next((c for c in old if c["type"] == type_), None)
    t = now()
    transition = prev["lastTransitionTime"] if prev and prev["status"] == status else t
    return {"type": type_, "status": status, "lastUpdateTime": t, "lastTransitionTime": transition,
            "reason": reason, "message": message}


def _set_condition(conds: list[dict], new: dict) -> list[dict]:
    prev = next((c for c in conds if c["type"] == new["type"]), None)
    if prev and prev["status"] == new["status"] and prev["reason"] == new["reason"] and \
            prev.get("message") == new.get("message"):
        return conds            # unchanged: keep its times (no write, no spurious watch event)
    return [c for c in conds if c["type"] != new["type"]] + [new]


class Controllers:
    def __init__(self, store: Store, job_backoff_seconds: float = 1.0):
        self.store = store
        self.job_backoff_seconds = job_backoff_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="testbed-controllers", daemon=True)
        self.errors: list[str] = []
        from deploy_pipelines_tests.k8s_testbed.rollouts import RolloutController

        self.rollouts = RolloutController(store)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self.store.lock:
            self.store.changed.notify_all()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self.store.lock:
                self.store.changed.wait(0.2)
            try:
                self.reconcile()
            except ApiError as exc:      # a conflict with a concurrent writer: next round
                if exc.code != 409:
                    self.errors.append(exc.message)
            except Exception as exc:  # noqa: BLE001 - keep the loop alive; tests read errors
                self.errors.append(repr(exc))

    def reconcile(self) -> None:
        for d in self.store.list(DEPLOY)[0]:
            self.deployment(d)
        for rs in self.store.list(RS)[0]:
            self.replicaset(rs)
        for job in self.store.list(JOBS)[0]:
            self.job(job)
        self.rollouts.reconcile()
        self.collect_garbage()
        for svc in self.store.list(SERVICES)[0]:
            self.endpoints(svc)

    # --- Deployment ----------------------------------------------------------------------
    def deployment(self, d: dict) -> None:
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        spec = d["spec"]
        replicas = spec.get("replicas", 1)
        rss = [rs for rs in self.store.list(RS, ns)[0] if owned_by(rs, d)]
        h = template_hash(spec["template"])
        new = next((rs for rs in rss if rs["metadata"].get("labels", {}).get("pod-template-hash") == h), None)
        olds = sorted((rs for rs in rss if rs is not new), key=lambda r: int(r["metadata"].get(
            "annotations", {}).get(REVISION, 0)))
        max_rev = max([int(rs["metadata"].get("annotations", {}).get(REVISION, 0)) for rs in rss] or [0])
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        ru = strategy.get("rollingUpdate") or {}
        surge = resolve(ru.get("maxSurge", "25%"), replicas, True) if rolling else 0
        unavailable = resolve(ru.get("maxUnavailable", "25%"), replicas, False) if rolling else replicas
        if rolling and surge == 0 and unavailable == 0:
            unavailable = 1
        conds = list((d.get("status") or {}).get("conditions") or [])
        if spec.get("paused"):
            return self._deployment_status(d, new, rss, conds, unavailable, replicas)
        created = False
        if new is None:
            labels = {**spec["template"].get("metadata", {}).get("labels", {}), "pod-template-hash": h}
            template = json.loads(json.dumps(spec["template"]))
            template.setdefault("metadata", {})["labels"] = labels
            sel = json.loads(json.dumps(spec["selector"]))
            sel.setdefault("matchLabels", {})["pod-template-hash"] = h
            start = 0
            if rolling:
                current = sum(rs["spec"].get("replicas", 0) for rs in rss)
                start = max(0, min(replicas + surge - current, replicas)) if olds else replicas
            elif not olds:
                start = replicas
            new = self.store.create(RS, ns, {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": f"{name}-{h}", "labels": labels, "ownerReferences": [owner_ref(d)],
                             "annotations": {REVISION: str(max_rev + 1), "deployment.kubernetes.io/desired-replicas":
                                             str(replicas)}},
                "spec": {"replicas": start, "selector": sel, "template": template,
                         "minReadySeconds": spec.get("minReadySeconds", 0)}})
            rss.append(new)
            created = True
            conds = _set_condition(conds, condition("Progressing", "True", "NewReplicaSetCreated",
                                                    f'Created new replica set "{new["metadata"]["name"]}"', conds))
        elif int(new["metadata"].get("annotations", {}).get(REVISION, 0)) < max_rev:
            # Rolled back to an older template: it becomes the newest revision again.
            new["metadata"].setdefault("annotations", {})[REVISION] = str(max_rev + 1)
            new = self._write_rs(new)
        if not created:
            if rolling:
                self._roll(new, olds, replicas, surge, unavailable)
            else:
                self._recreate(ns, new, olds, replicas)
        self._deployment_status(self.store.get(DEPLOY, ns, name), self.store.find(RS, ns, new["metadata"]["name"]),
                                [self.store.find(RS, ns, rs["metadata"]["name"]) or rs for rs in rss], conds,
                                unavailable, replicas)

    def _write_rs(self, rs: dict) -> dict:
        return self.store.update(RS, rs["metadata"]["namespace"], rs["metadata"]["name"], rs, check_version=False)

    def _scale(self, rs: dict, n: int) -> None:
        if rs["spec"].get("replicas", 0) != n:
            rs["spec"]["replicas"] = n
            self._write_rs(rs)

    def _roll(self, new: dict, olds: list[dict], replicas: int, surge: int, unavailable: int) -> None:
        """rolling.go: reconcileNewReplicaSet, then reconcileOldReplicaSets."""
        all_rs = [new, *olds]
        spec_of = lambda rs: rs["spec"].get("replicas", 0)                       # noqa: E731
        avail_of = lambda rs: (rs.get("status") or {}).get("availableReplicas", 0)  # noqa: E731
        if spec_of(new) > replicas:
            return self._scale(new, replicas)
        if spec_of(new) < replicas:
            up = min(replicas + surge - sum(map(spec_of, all_rs)), replicas - spec_of(new))
            if up > 0:
                return self._scale(new, spec_of(new) + up)
        min_available = replicas - unavailable
        new_unavailable = spec_of(new) - avail_of(new)
        budget = sum(map(spec_of, all_rs)) - min_available - new_unavailable
        for rs in olds:                     # unhealthy old replicas first: they serve no one
            if budget <= 0:
                break
            unhealthy = spec_of(rs) - avail_of(rs)
            if unhealthy > 0:
                n = min(unhealthy, budget)
                self._scale(rs, spec_of(rs) - n)
                budget -= n
        budget = sum(map(avail_of, all_rs)) - min_available
        for rs in olds:
            if budget <= 0:
                break
            n = min(spec_of(rs), budget)
            if n > 0:
                self._scale(rs, spec_of(rs) - n)
                budget -= n

    def _recreate(self, ns: str, new: dict, olds: list[dict], replicas: int) -> None:
        for rs in olds:
            self._scale(rs, 0)
        pods = [p for p in self.store.list(PODS, ns)[0] if any(owned_by(p, rs) for rs in olds)]
        if not pods:
            self._scale(new, replicas)

    def _deployment_status(self, d: dict, new: dict | None, rss: list[dict], conds: list[dict],
                           unavailable: int, replicas: int) -> None:
        st = lambda rs, k: ((rs or {}).get("status") or {}).get(k, 0)   # noqa: E731
        old = d.get("status") or {}
        status = {"observedGeneration": d["metadata"].get("generation", 1),
                  "replicas": sum(st(rs, "replicas") for rs in rss),
                  "updatedReplicas": st(new, "replicas"),
                  "readyReplicas": sum(st(rs, "readyReplicas") for rs in rss),
                  "availableReplicas": sum(st(rs, "availableReplicas") for rs in rss)}
        status["unavailableReplicas"] = max(replicas - status["availableReplicas"], 0)
        if status["availableReplicas"] >= replicas - unavailable:
            avail = condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.",
                              conds)
        else:
            avail = condition("Available", "False", "MinimumReplicasUnavailable",
                              "Deployment does not have minimum availability.", conds)
        conds = _set_condition(conds, avail)
        rs_name = (new or {}).get("metadata", {}).get("name", "")
        complete = (status["updatedReplicas"] == replicas and status["replicas"] == replicas
                    and status["availableReplicas"] == replicas)
        progressing = (status["updatedReplicas"] > old.get("updatedReplicas", 0)
                       or status["readyReplicas"] > old.get("readyReplicas", 0)
                       or status["availableReplicas"] > old.get("availableReplicas", 0)
                       or (status["replicas"] - status["updatedReplicas"])
                       < (old.get("replicas", 0) - old.get("updatedReplicas", 0)))
        prog = next((c for c in conds if c["type"] == "Progressing"), None)
        deadline = d["spec"].get("progressDeadlineSeconds", 600)
        if complete:
            conds = _set_condition(conds, condition("Progressing", "True", "NewReplicaSetAvailable",
                                                    f'ReplicaSet "{rs_name}" has successfully progressed.', conds))
        elif progressing:
            c = condition("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', conds)
            conds = [x for x in conds if x["type"] != "Progressing"] + [c]     # lastUpdateTime moves on progress
        elif prog and prog["status"] == "True" and time.time() - _ts(prog["lastUpdateTime"]) > deadline:
            conds = _set_condition(conds, condition("Progressing", "False", "ProgressDeadlineExceeded",
                                                    f'ReplicaSet "{rs_name}" has timed out progressing.', conds))
        status["conditions"] = sorted(conds, key=lambda c: c["type"])
        if status != old:
            d["status"] = status
            self.store.update(DEPLOY, d["metadata"]["namespace"], d["metadata"]["name"], d, "status",
                              check_version=False)

    # --- ReplicaSet ----------------------------------------------------------------------
    def replicaset(self, rs: dict) -> None:
        ns = rs["metadata"]["namespace"]
        pods = [p for p in self.store.list(PODS, ns)[0] if owned_by(p, rs) and pod_active(p)]
        want = rs["spec"].get("replicas", 1)
        for _ in range(want - len(pods)):
            pods.append(self._create_pod(rs, rs["spec"]["template"], rs["metadata"]["name"]))
        if len(pods) > want:
            # Not ready before ready, newest before oldest (controller.ActivePods ordering).
            victims = sorted(pods, key=lambda p: (pod_ready(p), -_ts(p["metadata"]["creationTimestamp"])))
            for p in victims[:len(pods) - want]:
                self.store.mark_deleting(PODS, ns, p["metadata"]["name"])
                pods.remove(p)
        min_ready = rs["spec"].get("minReadySeconds", 0)
        ready = [p for p in pods if pod_ready(p)]
        available = [p for p in ready if time.time() - _ts(next(
            c for c in p["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]) >= min_ready]
        sel = selector_of(rs["spec"]["selector"])
        status = {"replicas": len(pods), "fullyLabeledReplicas": sum(matches(p["metadata"].get("labels"), sel)
                                                                     for p in pods),
                  "readyReplicas": len(ready), "availableReplicas": len(available),
                  "observedGeneration": rs["metadata"].get("generation", 1)}
        if status != rs.get("status"):
            rs["status"] = status
            self.store.update(RS, ns, rs["metadata"]["name"], rs, "status", check_version=False)

    def _create_pod(self, owner: dict, template: dict, prefix: str, labels: dict | None = None) -> dict:
        md = template.get("metadata") or {}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{prefix}-{secrets.token_hex(3)[:5]}",
                            "labels": {**(md.get("labels") or {}), **(labels or {})},
                            "annotations": dict(md.get("annotations") or {}),
                            "ownerReferences": [owner_ref(owner)]},
               "spec": json.loads(json.dumps(template["spec"]))}
        pod["spec"].setdefault("restartPolicy", "Always")
        return self.store.create(PODS, owner["metadata"]["namespace"], pod)

    # --- Job -----------------------------------------------------------------------------
    def job(self, job: dict) -> None:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        spec, status = job["spec"], dict(job.get("status") or {})
        conds = list(status.get("conditions") or [])
        pods = [p for p in self.store.list(PODS, ns)[0] if owned_by(p, job)]
        active = [p for p in pods if pod_active(p)]
        done = any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conds)
        if done:
            for p in active:
                self.store.mark_deleting(PODS, ns, p["metadata"]["name"])
            return
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        status.setdefault("startTime", now())
        completions = spec.get("completions", 1)
        deadline = spec.get("activeDeadlineSeconds")
        finish = None
        if succeeded >= completions:
            finish = ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        elif failed > spec.get("backoffLimit", 6):
            finish = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and time.time() - _ts(status["startTime"]) > deadline:
            finish = ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        if finish:
            kind, reason, message = finish
            first = "SuccessCriteriaMet" if kind == "Complete" else "FailureTarget"
            conds += [condition(first, "True", reason, message, []), condition(kind, "True", reason, message, [])]
            for c in conds:
                c.pop("lastUpdateTime", None)
                c["lastProbeTime"] = c["lastTransitionTime"]
            for p in active:
                self.store.mark_deleting(PODS, ns, p["metadata"]["name"])
            active = []
            if kind == "Complete":
                status["completionTime"] = now()
        elif not active and succeeded + len(active) < completions:
            last_failure = max((_ts(p["metadata"].get("creationTimestamp")) for p in pods
                                if (p.get("status") or {}).get("phase") == "Failed"), default=0)
            if time.time() - last_failure >= self.job_backoff_seconds * (2 ** max(failed - 1, 0)) or not failed:
                labels = {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                          "batch.kubernetes.io/job-name": name, "controller-uid": job["metadata"]["uid"],
                          "job-name": name}
                active.append(self._create_pod(job, spec["template"], name, labels))
        status.update({"active": len(active), "succeeded": succeeded, "failed": failed,
                       "ready": sum(1 for p in active if pod_ready(p)), "terminating": 0,
                       "uncountedTerminatedPods": {}, "conditions": conds})
        if not conds:
            status.pop("conditions")
        for k in ("active", "succeeded", "failed"):
            if not status[k]:
                status.pop(k)
        if status != job.get("status"):
            job["status"] = status
            self.store.update(JOBS, ns, name, job, "status", check_version=False)

    # --- garbage collector and endpoints -------------------------------------------------
    def collect_garbage(self) -> None:
        from deploy_pipelines_tests.k8s_testbed.rollouts import ROLLOUTS

        uids = {o["metadata"]["uid"] for res in (DEPLOY, RS, JOBS, ROLLOUTS) for o in self.store.list(res)[0]}
        for res in (RS, PODS):
            for o in self.store.list(res)[0]:
                refs = o["metadata"].get("ownerReferences") or []
                if refs and not any(r["uid"] in uids for r in refs):
                    ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
                    if res is PODS:
                        if not o["metadata"].get("deletionTimestamp"):
                            self.store.mark_deleting(PODS, ns, name)
                    else:
                        self.store.delete(res, ns, name)

    def endpoints(self, svc: dict) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        selector = (svc.get("spec") or {}).get("selector")
        if not selector:
            return
        pods = [p for p in self.store.list(PODS, ns)[0] if not p["metadata"].get("deletionTimestamp")
                and matches(p["metadata"].get("labels"), [("=", k, v) for k, v in selector.items()])
                and (p.get("status") or {}).get("podIP")]
        subsets = []
        for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
            host_ports = json.loads(p["metadata"].get("annotations", {}).get(PORTS_ANNOTATION, "{}"))
            ports = []
            for sp in svc["spec"].get("ports") or []:
                target = sp.get("targetPort", sp["port"])
                if isinstance(target, str) and not target.isdigit():
                    target = next((cp["containerPort"] for c in p["spec"]["containers"] for cp in c.get("ports") or []
                                   if cp.get("name") == target), None)
                host = host_ports.get(str(target))
                if host:
                    ports.append({"port": host, "protocol": sp.get("protocol", "TCP"),
                                  **({"name": sp["name"]} if sp.get("name") else {})})
            if not ports:
                continue
            address = {"ip": p["status"]["podIP"], "nodeName": p["spec"].get("nodeName", ""),
                       "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"],
                                     "uid": p["metadata"]["uid"]}}
            subsets.append({("addresses" if pod_ready(p) else "notReadyAddresses"): [address], "ports": ports})
        ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "labels": svc["metadata"].get(
            "labels", {})}, "subsets": subsets}
        current = self.store.find(ENDPOINTS, ns, name)
        if current is None:
            self.store.create(ENDPOINTS, ns, ep)
        elif current.get("subsets", []) != subsets:
            current["subsets"] = subsets
            self.store.update(ENDPOINTS, ns, name, current, check_version=False)
