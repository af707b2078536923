"""Kubernetes through the official `kubernetes` client: a kubeconfig (path from an env var, a
context, a namespace) or the run pod's service account.

Per target: two Deployments, one per colour (`<deployment>` is blue, `<deployment>-green`), pods
labelled (app, colour); three Services: the live one users reach (`<service>`), `-preview` (the
new version only) and `-stable`. Rolling patches the stable colour's Deployment in place and
follows it by WATCH (generation/observedGeneration, updated/ready/available replicas, the
Progressing condition); a pod in CrashLoopBackOff/ImagePullBackOff or the progress deadline
aborts it back to the previous ReplicaSet's template (`kubectl rollout undo`), with the pod's
reason in the error. Blue-green and canary start the other colour beside stable; the live
Service's selector moves traffic: one colour (0% / 100%), or both colours with the canary's
replica count chosen for the weight (replica ratio: the achievable weight is logged).

The live Service's annotation `deploy-pipelines.io/state` records stable, new and previous with
the workload each was released with (the platform's own record, as the Docker platform's nginx
header); each Deployment and pod template carries version, digest, run id and commit."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import PrivateAttr

from deploy_pipelines.adapters import k8s_objects as m
from deploy_pipelines.adapters.platform import Capabilities, Log, Platform, PlatformError, RolloutStatus, Track
from deploy_pipelines.adapters.records import DeployResult, Release, Workload

FATAL_WAITING = ("CrashLoopBackOff", "ImagePullBackOff", "CreateContainerConfigError", "InvalidImageName")
WATCH_WINDOW = 1      # seconds per watch request: pod failures are checked between windows


class RolloutFailed(PlatformError):
    pass


def _record(workload: Workload, colour: str) -> dict:
    return {"version": workload.version, "digest": workload.digest, "image": workload.image, "colour": colour,
            "run_id": workload.run_id, "commit": workload.commit, "workload": workload.model_dump(mode="json")}


def _annotation_path(key: str) -> str:
    return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")


def _annotate(annotations: dict[str, str]) -> list[dict]:
    """JSON-patch ops setting these annotations, leaving the others (the controller's revision) alone."""
    return [{"op": "add", "path": _annotation_path(k), "value": v} for k, v in annotations.items()]


def _other(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


class KubernetesPlatform(Platform):
    """One target's Deployments and Services in one namespace."""

    namespace: str = "default"
    kubeconfig: str = ""                 # path (from {env: NAME}); "" with in_cluster
    context: str = ""
    in_cluster: bool = False
    deployment: str = ""                 # default: the service name, `_` as `-`
    service_name: str = ""
    service_type: str = "ClusterIP"
    image_pull_secret: str = ""
    progress_deadline: float = 600.0
    drain: float = 2.0
    replicas: int = 1                    # the target's replicas: the canary's weight step follows from it
    propagation: float = 1.0             # after Endpoints change, until proxies route by them (not observable)
    rollout_timeout: float = 900.0

    _api: Any = PrivateAttr(default=None)

    # ------------------------------------------------------------------ plumbing
    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        # Replica ratio: one canary pod beside N stable ones is the smallest step.
        return Capabilities(traffic="pipeline", weight_step=max(1, 100 // (self.replicas + 1)))

    @property
    def api(self):
        if self._api is None:
            from kubernetes import client, config

            if self.in_cluster:
                config.load_incluster_config()
                self._api = client.ApiClient()
            else:
                self._api = config.new_client_from_config(config_file=self.kubeconfig or None,
                                                          context=self.context or None)
        return self._api

    @property
    def core(self):
        from kubernetes import client
        return client.CoreV1Api(self.api)

    @property
    def apps(self):
        from kubernetes import client
        return client.AppsV1Api(self.api)

    @property
    def app(self) -> str:
        return self.deployment or self.service.replace("_", "-")

    @property
    def svc(self) -> str:
        return self.service_name or self.service.replace("_", "-")

    def _deployment_name(self, colour: str) -> str:
        return self.app if colour == "blue" else f"{self.app}-green"

    def _dict(self, obj) -> dict:
        return self.api.sanitize_for_serialization(obj)

    def _read(self, fn, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException
        try:
            return self._dict(fn(name, self.namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise PlatformError(f"{self.where}: reading {name} in namespace {self.namespace}: "
                                f"HTTP {exc.status} {exc.reason}") from None

    def _call(self, fn, *args, **kw):
        """One API write; a 5xx (an API server restarting) is retried twice, a 4xx names the object."""
        from kubernetes.client.exceptions import ApiException
        for attempt in range(3):
            try:
                return fn(*args, **kw)
            except ApiException as exc:
                if exc.status and exc.status >= 500 and attempt < 2:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                body = (exc.body or "")[:600] if isinstance(exc.body, str) else ""
                raise PlatformError(f"{self.where}: {fn.__name__} in namespace {self.namespace}: "
                                    f"HTTP {exc.status} {exc.reason} {body}") from None

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        live = self._read(self.core.read_namespaced_service, self.svc)
        if not live:
            return {}
        text = ((live["metadata"].get("annotations") or {}).get(m.STATE)) or "{}"
        return json.loads(text)

    def _save(self, state: dict, selector: dict | None = None) -> None:
        ops = [{"op": "add", "path": _annotation_path(m.STATE), "value": json.dumps(state, sort_keys=True)}]
        if selector is not None:
            ops.append({"op": "replace", "path": "/spec/selector", "value": selector})
        self._call(self.core.patch_namespaced_service, self.svc, self.namespace, ops)

    def _selector(self, *colours: str) -> dict:
        return {"app": self.app, m.COLOUR: colours[0]} if len(colours) == 1 else {"app": self.app}

    def _ensure_services(self, colour: str, state: dict) -> None:
        port = self.public_port
        for name, st in ((self.svc, state), (f"{self.svc}-preview", None), (f"{self.svc}-stable", None)):
            if self._read(self.core.read_namespaced_service, name) is None:
                body = m.service(name, self.app, self._selector(colour), port, self._target_port(state),
                                 self.service_type, st)
                self._call(self.core.create_namespaced_service, self.namespace, body)

    @staticmethod
    def _target_port(state: dict) -> int:
        rec = state.get("new") or state.get("stable") or {}
        return int((rec.get("workload") or {}).get("container_port", 8080))

    def _point(self, name: str, colour: str) -> None:
        self._call(self.core.patch_namespaced_service, name, self.namespace,
                   [{"op": "replace", "path": "/spec/selector", "value": self._selector(colour)}])

    def _release(self, rec: dict | None, previous: dict | None = None) -> Release | None:
        if not rec:
            return None
        return Release(self.service, self.environment, rec["version"], rec["digest"], rec["image"],
                       rec.get("run_id", ""), (previous or {}).get("version", ""), (previous or {}).get("image", ""),
                       rec.get("commit", ""), Workload.model_validate(rec["workload"]) if rec.get("workload") else None)

    # ------------------------------------------------------------------ Deployments
    def _apply(self, colour: str, workload: Workload, replicas: int, strategy=None) -> None:
        """Create the colour's Deployment, or patch it (JSON patch: the whole template, so no stale
        env var survives a merge) to this workload, surge limits and replica count."""
        name = self._deployment_name(colour)
        template = m.pod_template(self.app, colour, workload, self.where, self.image_pull_secret or None, self.drain)
        surge, unavailable = getattr(strategy, "max_surge", 1), getattr(strategy, "max_unavailable", 0)
        body = m.deployment(name, self.app, colour, workload, replicas, template, surge, unavailable,
                            self.progress_deadline)
        if self._read(self.apps.read_namespaced_deployment, name) is None:
            self._call(self.apps.create_namespaced_deployment, self.namespace, body)
            return
        self._call(self.apps.patch_namespaced_deployment, name, self.namespace, [
            *_annotate(body["metadata"]["annotations"]),
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/spec/strategy", "value": body["spec"]["strategy"]},
            {"op": "replace", "path": "/spec/progressDeadlineSeconds", "value": int(self.progress_deadline)},
            {"op": "replace", "path": "/spec/replicas", "value": replicas}])

    def _scale(self, colour: str, replicas: int) -> bool:
        name = self._deployment_name(colour)
        d = self._read(self.apps.read_namespaced_deployment, name)
        if d is None or d["spec"].get("replicas") == replicas:
            return False
        self._call(self.apps.patch_namespaced_deployment, name, self.namespace,
                   [{"op": "replace", "path": "/spec/replicas", "value": replicas}])
        return True

    @staticmethod
    def _complete(d: dict) -> bool:
        spec, st = d["spec"], d.get("status") or {}
        want = spec.get("replicas", 1)
        progressing = next((c for c in st.get("conditions") or [] if c["type"] == "Progressing"), None)
        return (st.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
                and (st.get("updatedReplicas") or 0) == want and (st.get("replicas") or 0) == want
                and (st.get("readyReplicas") or 0) >= want and (st.get("availableReplicas") or 0) >= want
                and (want == 0 or (progressing or {}).get("reason") == "NewReplicaSetAvailable"))

    def _follow(self, colour: str, digest: str, log: Log) -> dict:
        """Watch the Deployment until its rollout is complete; RolloutFailed on the progress
        deadline or a pod of this digest that cannot start."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        name = self._deployment_name(colour)
        deadline = time.monotonic() + self.rollout_timeout
        while time.monotonic() < deadline:
            w = watch.Watch()
            try:
                for ev in w.stream(self.apps.list_namespaced_deployment, self.namespace,
                                   field_selector=f"metadata.name={name}", timeout_seconds=WATCH_WINDOW):
                    d = self._dict(ev["object"])
                    if self._complete(d):
                        w.stop()
                        return d
                    for c in (d.get("status") or {}).get("conditions") or []:
                        if c["type"] == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
                            w.stop()
                            why = self._failing_pod(colour, digest) or c.get("message", "")
                            raise RolloutFailed(f"{name}: progress deadline ({self.progress_deadline:.0f}s) "
                                                f"exceeded: {why}")
            except ApiException as exc:
                if not exc.status or exc.status < 500:
                    raise
                log(f"watch of {name} failed with HTTP {exc.status}: watching again")
            # Waiting reasons change pods, not the Deployment: looked at between watch windows.
            bad = self._failing_pod(colour, digest)
            if bad:
                raise RolloutFailed(bad)
        raise RolloutFailed(f"{name}: rollout not complete within {self.rollout_timeout:.0f}s")

    def _pods(self, colour: str | None = None) -> list[dict]:
        selector = f"app={self.app}" + (f",{m.COLOUR}={colour}" if colour else "")
        return [self._dict(p) for p in self._call(self.core.list_namespaced_pod, self.namespace,
                                                  label_selector=selector).items]

    def _failing_pod(self, colour: str, digest: str) -> str:
        for pod in self._pods(colour):
            meta = pod["metadata"]
            if meta.get("deletionTimestamp") or (meta.get("annotations") or {}).get(m.DIGEST) != digest:
                continue
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in FATAL_WAITING:
                    last = (cs.get("lastState") or {}).get("terminated") or {}
                    exited = f", last exit code {last['exitCode']} ({last.get('reason', '')})" if last else ""
                    return (f"pod {meta['name']}: {waiting['reason']}{exited}: {waiting.get('message', '')}"
                            f"{self._log_tail(meta['name']) if last else ''}")
        return ""

    def _log_tail(self, pod: str) -> str:
        try:
            text = self.core.read_namespaced_pod_log(pod, self.namespace, tail_lines=5, previous=True)
        except Exception:  # noqa: BLE001 - the log is a courtesy in the message
            return ""
        return f"; its log:\n{text.strip()}" if text and text.strip() else ""

    def _undo(self, colour: str, stable: dict, log: Log) -> None:
        """`kubectl rollout undo`: the Deployment's template back to its previous ReplicaSet's
        (the newest one whose pods carried the stable digest); its own recorded workload if none."""
        name = self._deployment_name(colour)
        template = None
        rss = [self._dict(r) for r in self._call(self.apps.list_namespaced_replica_set, self.namespace,
                                                 label_selector=f"app={self.app},{m.COLOUR}={colour}").items]
        rss = [r for r in rss if (r["spec"]["template"]["metadata"].get("annotations") or {}).get(m.DIGEST)
               == stable["digest"]]
        if rss:
            newest = max(rss, key=lambda r: int((r["metadata"].get("annotations") or {}).get(
                "deployment.kubernetes.io/revision", "0")))
            template = newest["spec"]["template"]
            template["metadata"].get("labels", {}).pop("pod-template-hash", None)
            log(f"undo: {name} back to ReplicaSet {newest['metadata']['name']} ({stable['version']})")
        workload = Workload.model_validate(stable["workload"])
        if template is None:
            template = m.pod_template(self.app, colour, workload, self.where, self.image_pull_secret or None,
                                      self.drain)
            log(f"undo: {name} back to {stable['version']} from its release record")
        self._call(self.apps.patch_namespaced_deployment, name, self.namespace, [
            *_annotate(m.release_annotations(workload)),
            {"op": "replace", "path": "/spec/template", "value": template}])
        self._follow(colour, stable["digest"], log)

    def _await_endpoints(self, selector: dict, settle: bool = True) -> None:
        """Watch the live Service's Endpoints until they hold exactly the ready pods the selector
        picks, then give proxies `propagation` seconds (their programming is not in the API)."""
        from kubernetes import watch
        sel = ",".join(f"{k}={v}" for k, v in selector.items())
        want = {p["metadata"]["name"] for p in map(self._dict, self.core.list_namespaced_pod(
            self.namespace, label_selector=sel).items)
            if not p["metadata"].get("deletionTimestamp") and any(
                c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            w = watch.Watch()
            for ev in w.stream(self.core.list_namespaced_endpoints, self.namespace,
                               field_selector=f"metadata.name={self.svc}", timeout_seconds=WATCH_WINDOW):
                ep = self._dict(ev["object"])
                have = {(a.get("targetRef") or {}).get("name") for s in ep.get("subsets") or []
                        for a in s.get("addresses") or []}
                if have == want:
                    w.stop()
                    if settle:
                        time.sleep(self.propagation)   # real time: proxies do not follow the injected clock
                    return
        raise PlatformError(f"{self.where}: Service {self.svc} did not reach endpoints {sorted(want)} within 30s")

    def _route(self, state: dict, selector: dict) -> None:
        self._save(state, selector)
        self._await_endpoints(selector)

    # ------------------------------------------------------------------ reading
    def current(self) -> Release | None:
        state = self._state()
        return self._release(state.get("stable"), state.get("previous"))

    def _url(self, name: str) -> str:
        deadline = time.monotonic() + (10 if self.service_type == "LoadBalancer" else 0)
        while True:
            svc = self._read(self.core.read_namespaced_service, name)
            if svc is None:
                return ""
            for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
                port = ((ing.get("ports") or [{}])[0]).get("port") or svc["spec"]["ports"][0]["port"]
                return f"http://{ing.get('ip') or ing.get('hostname')}:{port}"
            if time.monotonic() >= deadline:
                return f"http://{name}.{self.namespace}.svc:{svc['spec']['ports'][0]['port']}"
            time.sleep(0.1)

    def public_url(self) -> str:
        return self._url(self.svc) or f"http://{self.svc}.{self.namespace}.svc:{self.public_port}"

    def verification_url(self, track: Track) -> str:
        state = self._state()
        if not state or (track == "stable" and not state.get("stable")):
            return ""
        return self._url(f"{self.svc}-{'stable' if track == 'stable' else 'preview'}")

    def status(self) -> RolloutStatus:
        state = self._state()
        counts: dict[str, int] = {}
        for p in self._pods():
            if p["metadata"].get("deletionTimestamp") or (p.get("status") or {}).get("phase") != "Running":
                continue
            v = (p["metadata"].get("annotations") or {}).get(m.VERSION, "?")
            counts[v] = counts.get(v, 0) + 1
        stable, new = self._release(state.get("stable")), self._release(state.get("new"))
        if stable is None and new is None:
            phase = "none"
        elif new is not None:
            phase = "progressing" if counts.get(new.version) else "degraded"
        else:
            want = stable.workload.replicas if stable.workload else 1
            phase = "healthy" if counts.get(stable.version, 0) >= want else "degraded"
        return RolloutStatus(phase=phase, stable=stable, new=new, weight=int(state.get("weight", 0)) if new else 0,
                             instances=counts, message=state.get("mode") or "")

    # ------------------------------------------------------------------ changes
    def deploy(self, workload: Workload, strategy, log: Log) -> DeployResult:
        state = self._state()
        if state.get("new") and state["new"]["digest"] != workload.digest:
            log(f"a previous attempt left {state['new']['version']} behind: removing it first")
            self.abort("superseded by a new deploy", log)
            state = self._state()
        stable, kind = state.get("stable"), strategy.kind
        if stable and stable["digest"] == workload.digest and not state.get("new"):
            log(f"{workload.version} ({workload.digest[:19]}) already serves: nothing to deploy")
            return self._result(stable, state.get("previous"), kind)
        if not stable or kind == "rolling":
            colour = stable["colour"] if stable else "blue"
            new = _record(workload, colour)
            state.update(new=new, weight=100 if not stable else 0, mode="rolling")
            self._ensure_services(colour, state)
            self._save(state)
            self._apply(colour, workload, workload.replicas, strategy if kind == "rolling" else None)
            log(f"rolling: {self._deployment_name(colour)} -> {workload.version} ({workload.digest[:19]}), "
                f"{workload.replicas} replica(s); following by watch")
            try:
                self._follow(colour, workload.digest, log)
            except RolloutFailed as exc:
                log(f"rollout of {workload.version} failed: {exc}")
                self.abort(str(exc), log)
                raise PlatformError(f"{self.where}: rollout of {workload.version} aborted: {exc}") from None
            state["weight"] = 100
            self._save(state)
            self._await_endpoints(self._selector(colour), settle=not stable)
            log(f"rolling: all {workload.replicas} replica(s) run {workload.version}")
        else:
            colour = _other(stable["colour"])
            replicas = getattr(strategy, "canary_replicas", None) or workload.replicas
            state.update(new=_record(workload, colour), weight=0, mode=kind)
            self._save(state)
            self._apply(colour, workload, replicas)
            try:
                self._follow(colour, workload.digest, log)
            except RolloutFailed as exc:
                self.abort(str(exc), log)
                raise PlatformError(f"{self.where}: {kind} start of {workload.version} aborted: {exc}") from None
            self._point(f"{self.svc}-preview", colour)
            log(f"{kind}: {replicas} replica(s) of {workload.version} ready beside {stable['version']} "
                f"({self._deployment_name(colour)}), no user traffic yet")
        return self._result(state["new"], stable, kind)

    def _result(self, new: dict, previous: dict | None, kind: str) -> DeployResult:
        return DeployResult(new=self._release(new, previous), previous=self._release(previous), strategy=kind,
                            endpoints=[self.verification_url("preview")], public_url=self.public_url())

    def set_weight(self, weight: int, log: Log) -> None:
        state = self._state()
        new, stable = state.get("new"), state.get("stable")
        if not new:
            raise PlatformError(f"{self.where}: no new version to send traffic to")
        weight = max(0, min(100, int(weight)))
        if not stable or stable["colour"] == new["colour"]:
            state["weight"] = 100      # rolling: the new version already has all of it
            self._save(state)
            return
        if weight in (0, 100):
            colour = new["colour"] if weight else stable["colour"]
            if weight:
                self._ready_replicas(new, log)
            state["weight"] = weight
            self._route(state, self._selector(colour))
        else:
            # Replica ratio: n canary pods beside N stable ones get n/(N+n) of the requests.
            n_stable = self._read(self.apps.read_namespaced_deployment,
                                  self._deployment_name(stable["colour"]))["spec"]["replicas"]
            n = max(1, round(n_stable * weight / (100 - weight)))
            if self._scale(new["colour"], n):
                self._follow(new["colour"], new["digest"], log)
            state["weight"] = round(100 * n / (n_stable + n))
            if state["weight"] != weight:
                log(f"replica ratio: {weight}% asked, {state['weight']}% achievable with {n} canary / "
                    f"{n_stable} stable pod(s)")
            self._route(state, self._selector(stable["colour"], new["colour"]))
        log(f"traffic: {state['weight']}% {new['version']}, {100 - state['weight']}% {stable['version']}")

    def _ready_replicas(self, rec: dict, log: Log) -> None:
        want = Workload.model_validate(rec["workload"]).replicas
        if self._scale(rec["colour"], want):
            self._follow(rec["colour"], rec["digest"], log)

    def promote(self, log: Log, keep_previous_seconds: float = 0) -> Release:
        state = self._state()
        new, old = state.get("new"), state.get("stable")
        if not new:
            current = self.current()
            if current is None:
                raise PlatformError(f"{self.where}: nothing to promote")
            log(f"{current.version} is already stable")
            return current
        swapped = bool(old) and old["colour"] != new["colour"]
        if swapped:
            self._ready_replicas(new, log)
        state.update(stable=new, new=None, weight=0, mode=None)
        state.pop("previous_expires", None)
        if old and old["digest"] != new["digest"]:
            state["previous"] = old
            if swapped and keep_previous_seconds:
                state["previous_expires"] = self._clock() + keep_previous_seconds
        self._route(state, self._selector(new["colour"]))
        for name in (f"{self.svc}-preview", f"{self.svc}-stable"):
            self._point(name, new["colour"])
        if swapped and not keep_previous_seconds:
            self._scale(old["colour"], 0)
            log(f"{self._deployment_name(old['colour'])} ({old['version']}) scaled to 0")
        elif swapped:
            log(f"{old['version']} kept warm for {keep_previous_seconds:.0f}s as the instant rollback target")
        return self._release(new, old)

    def abort(self, reason: str, log: Log) -> Release | None:
        state = self._state()
        new, stable = state.get("new"), state.get("stable")
        if not new:
            return self.current()
        if stable is None:
            self._scale(new["colour"], 0)
            state.update(new=None, weight=0, mode=None)
            self._save(state)
            log(f"aborted {new['version']}: {reason}; nothing was stable before")
            return None
        if stable["colour"] != new["colour"]:
            state.update(new=None, weight=0, mode=None)
            self._route(state, self._selector(stable["colour"]))   # traffic back to stable at once
            self._point(f"{self.svc}-preview", stable["colour"])
            self._scale(new["colour"], 0)
            log(f"aborted: traffic 100% on {stable['version']} again ({reason})")
        else:
            log(f"aborting: {self._deployment_name(stable['colour'])} back to {stable['version']} ({reason})")
            self._undo(stable["colour"], stable, log)
            state.update(new=None, weight=0, mode=None)
            self._save(state)
        return self._release(stable, state.get("previous"))

    def rollback(self, log: Log, to: Workload | None = None) -> Release:
        state = self._state()
        if not state.get("stable"):
            raise PlatformError(f"{self.where}: nothing runs")
        if state.get("new"):
            self.abort("rollback requested", log)
            state = self._state()
        stable = state["stable"]
        target = _record(to, "") if to else state.get("previous")
        if not target:
            raise PlatformError(f"{self.where}: no previous release recorded to roll back to")
        if target["digest"] == stable["digest"]:
            log(f"{stable['version']} already serves")
            return self._release(stable, state.get("previous"))
        colour = _other(stable["colour"])
        target = {**target, "colour": colour}
        workload = Workload.model_validate(target["workload"])
        d = self._read(self.apps.read_namespaced_deployment, self._deployment_name(colour))
        warm = d is not None and (d["metadata"].get("annotations") or {}).get(m.DIGEST) == target["digest"] and \
            (d.get("status") or {}).get("availableReplicas", 0) >= 1
        log(f"rollback to {target['version']}: " + ("still warm, switching traffic" if warm else
                                                      "redeploying it from its own release record"))
        self._apply(colour, workload, workload.replicas)
        self._follow(colour, target["digest"], log)
        state.update(stable=target, previous=stable, new=None, weight=0, mode=None)
        state.pop("previous_expires", None)
        self._route(state, self._selector(colour))
        for name in (f"{self.svc}-preview", f"{self.svc}-stable"):
            self._point(name, colour)
        self._scale(stable["colour"], 0)
        return self._release(target, stable)

    def cleanup(self, log: Log) -> list[str]:
        state = self._state()
        expires, prev, stable = state.get("previous_expires"), state.get("previous"), state.get("stable")
        if not expires or self._clock() < expires or not prev or not stable:
            return []
        removed = []
        if prev.get("colour") and prev["colour"] != stable["colour"] and self._scale(prev["colour"], 0):
            removed.append(self._deployment_name(prev["colour"]))
            log(f"{removed[-1]} ({prev['version']}) scaled to 0 after its grace period")
        state.pop("previous_expires")
        self._save(state)
        return removed
