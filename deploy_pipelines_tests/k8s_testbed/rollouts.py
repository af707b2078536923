"""The Argo Rollouts controller's canary step machine (basic canary, no traffic router), on the
test bed's store, with the status fields the pipeline reads and the verbs it writes:

- a Rollout's first template goes out whole and becomes `status.stableRS`;
- a new template gets a canary ReplicaSet (`rollouts-pod-template-hash`) and walks
  `spec.strategy.canary.steps` from `status.currentStepIndex`: `setWeight: w` scales the canary to
  ceil(w% x replicas) and stable to the rest, and moves on once the canary pods are available;
  `pause: {duration}` sets phase Paused with a CanaryPauseStep pause condition until the
  duration passes, or until promoted when it has none (status.pauseConditions cleared or
  spec.paused false, as `kubectl argo rollouts promote` does); `status.promoteFull: true` skips
  the rest; after the last step the canary becomes stable and the old ReplicaSet goes to 0;
- `status.abort: true` (`kubectl argo rollouts abort`): canary to 0, stable back to full,
  phase Degraded, message RolloutAborted.
Not modelled: analysis/experiment steps (the pipeline runs its own analysis), traffic routers
(Istio weights), blue-green strategy, anti-affinity, dynamic stable scale."""

from __future__ import annotations

import json
import math
import re

from deploy_pipelines_tests.k8s_testbed.controllers import (RS, _ts, owned_by, owner_ref, template_hash)
from deploy_pipelines_tests.k8s_testbed.resources import BY_PATH
from deploy_pipelines_tests.k8s_testbed.store import Store, now

ROLLOUTS = BY_PATH[("argoproj.io", "v1alpha1", "rollouts")]
HASH_LABEL = "rollouts-pod-template-hash"


def seconds(duration) -> float:
    """Argo durations: 30 (seconds), "30s", "5m", "1h"."""
    if isinstance(duration, (int, float)):
        return float(duration)
    m = re.fullmatch(r"(\d+)(s|m|h)?", str(duration))
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


class RolloutController:
    def __init__(self, store: Store):
        self.store = store

    def reconcile(self) -> None:
        for ro in self.store.list(ROLLOUTS)[0]:
            self.rollout(ro)

    def _rs(self, ro: dict, h: str, replicas: int) -> dict:
        ns, name = ro["metadata"]["namespace"], f"{ro['metadata']['name']}-{h}"
        rs = self.store.find(RS, ns, name)
        if rs is None:
            template = json.loads(json.dumps(ro["spec"]["template"]))
            template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
            selector = json.loads(json.dumps(ro["spec"]["selector"]))
            selector.setdefault("matchLabels", {})[HASH_LABEL] = h
            return self.store.create(RS, ns, {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
                "name": name, "labels": dict(template["metadata"]["labels"]), "ownerReferences": [owner_ref(ro)]},
                "spec": {"replicas": replicas, "selector": selector, "template": template}})
        if rs["spec"].get("replicas") != replicas:
            rs["spec"]["replicas"] = replicas
            rs = self.store.update(RS, ns, name, rs, check_version=False)
        return rs

    def rollout(self, ro: dict) -> None:
        ns = ro["metadata"]["namespace"]
        spec, status = ro["spec"], dict(ro.get("status") or {})
        replicas = spec.get("replicas", 1)
        steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
        h = template_hash(spec["template"])
        stable = status.get("stableRS")
        if status.get("currentPodHash") != h:            # a new template: the walk starts over
            status.update({"currentPodHash": h, "currentStepIndex": 0, "abort": False, "promoteFull": False})
            status.pop("pauseConditions", None)
            status.pop("abortedAt", None)
            status["controllerPause"] = False
        if stable is None:                                # the first template goes out whole
            stable = h
            status["stableRS"] = h
            status["currentStepIndex"] = len(steps)
        index = status.get("currentStepIndex", 0)
        phase, message = "Healthy", ""
        if h != stable and status.get("abort"):
            phase, message = "Degraded", f"RolloutAborted: Rollout aborted update to revision {h}"
            status.setdefault("abortedAt", now())
        elif h != stable:
            if status.get("promoteFull"):
                index = len(steps)
            weight = 0
            for step in steps[:index]:
                weight = step.get("setWeight", weight)
            phase = "Progressing"
            while index < len(steps):
                step = steps[index]
                if "setWeight" in step:
                    weight = step["setWeight"]
                    want = math.ceil(weight * replicas / 100)
                    canary = self._rs(ro, h, want)
                    self._rs(ro, stable, max(replicas - want, 0) if weight < 100 else 0)
                    if (canary.get("status") or {}).get("availableReplicas", 0) < want:
                        break
                    index += 1
                elif "pause" in step:
                    conds = status.get("pauseConditions")
                    if status.get("controllerPause") and not conds:
                        # The pause this controller set was cleared (promote): the step is done.
                        status["controllerPause"] = False
                        index += 1
                        continue
                    if not conds:
                        conds = status["pauseConditions"] = [{"reason": "CanaryPauseStep", "startTime": now()}]
                        status["controllerPause"] = True
                    duration = (step.get("pause") or {}).get("duration")
                    if duration is not None and _elapsed(conds[0]["startTime"]) >= seconds(duration):
                        status.pop("pauseConditions", None)
                        status["controllerPause"] = False
                        index += 1
                        continue
                    phase, message = "Paused", "CanaryPauseStep"
                    break
                else:
                    index += 1                            # analysis/experiment: not modelled
            if index >= len(steps):                        # fully promoted: canary becomes stable
                canary = self._rs(ro, h, replicas)
                if (canary.get("status") or {}).get("availableReplicas", 0) >= replicas:
                    self._rs(ro, stable, 0)
                    status["stableRS"] = stable = h
                    phase = "Healthy"
        status["currentStepIndex"] = index
        if h != stable and status.get("abort"):
            self._rs(ro, h, 0)
            self._rs(ro, stable, replicas)
        elif h == stable:
            self._rs(ro, h, replicas)
            for rs in self.store.list(RS, ns)[0]:
                if owned_by(rs, ro) and rs["metadata"]["labels"].get(HASH_LABEL) != h:
                    self._rs(ro, rs["metadata"]["labels"][HASH_LABEL], 0)
        self._status(ro, status, phase, message)

    def _status(self, ro: dict, status: dict, phase: str, message: str) -> None:
        ns = ro["metadata"]["namespace"]
        rss = [rs for rs in self.store.list(RS, ns)[0] if owned_by(rs, ro)]
        st = lambda rs, k: (rs.get("status") or {}).get(k, 0)   # noqa: E731
        current = [rs for rs in rss if rs["metadata"]["labels"].get(HASH_LABEL) == status["currentPodHash"]]
        sel = ",".join(f"{k}={v}" for k, v in (ro["spec"]["selector"].get("matchLabels") or {}).items())
        status.update({"phase": phase, "message": message, "observedGeneration": str(ro["metadata"]["generation"]),
                       "replicas": sum(st(rs, "replicas") for rs in rss),
                       "updatedReplicas": sum(st(rs, "replicas") for rs in current),
                       "readyReplicas": sum(st(rs, "readyReplicas") for rs in rss),
                       "availableReplicas": sum(st(rs, "availableReplicas") for rs in rss),
                       "HPAReplicas": sum(st(rs, "replicas") for rs in rss), "selector": sel})
        if not message:
            status.pop("message")
        if status != ro.get("status"):
            ro["status"] = status
            self.store.update(ROLLOUTS, ns, ro["metadata"]["name"], ro, "status", check_version=False)


def _elapsed(ts: str) -> float:
    import time

    return time.time() - _ts(ts)
