"""The test bed's one node: every Pod runs for real as a Podman container (Docker Engine API of the
local stack's Podman service), one worker thread per Pod.

What it does as a kubelet does: binds the pod to the node, resolves env (value, secretKeyRef,
configMapKeyRef, fieldRef; a missing Secret is CreateContainerConfigError), pulls the image
(failure: ErrImagePull, then ImagePullBackOff), runs command/args, honours readiness and liveness
probes (httpGet, tcpSocket, exec; initialDelaySeconds, periodSeconds, failureThreshold), restarts
by restartPolicy with a doubling back-off (CrashLoopBackOff with the last termination), and on
deletion stops the container with the grace period before the object goes.

Where it must differ: pods share the host's network (no per-pod network namespaces here), so
each declared containerPort gets a free loopback port, recorded in the pod annotation
`testbed.deploy-pipelines/ports`, and the container is told it as PORT (and BIND=127.0.0.1);
podIP is 127.0.0.1. Faults on demand: `fail_pulls` (images whose pull fails), `readiness_delay`
(seconds added before a pod's readiness probe can pass, by image)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import docker
import httpx

from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.k8s_testbed.controllers import PODS, PORTS_ANNOTATION
from deploy_pipelines_tests.k8s_testbed.resources import BY_PATH
from deploy_pipelines_tests.k8s_testbed.store import ApiError, Store, now

SECRETS, CONFIGMAPS = BY_PATH[("", "v1", "secrets")], BY_PATH[("", "v1", "configmaps")]
NODE = "testbed-node"
LABEL = "testbed.deploy-pipelines/cluster"


class Kubelet:
    def __init__(self, store: Store, docker_host: str, cluster_id: str, backoff_seconds: float = 1.0,
                 backoff_cap: float = 10.0):
        self.store, self.cluster_id = store, cluster_id
        self.client = docker.DockerClient(base_url=docker_host, timeout=120)
        self.backoff_seconds, self.backoff_cap = backoff_seconds, backoff_cap
        self.fail_pulls: set[str] = set()
        self.readiness_delay: dict[str, float] = {}
        self.workers: dict[str, PodWorker] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="testbed-kubelet", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for w in list(self.workers.values()):
            w.stop.set()
        for w in list(self.workers.values()):
            w.join(30)
        for c in self.client.containers.list(all=True, filters={"label": f"{LABEL}={self.cluster_id}"}):
            c.remove(force=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for pod in self.store.list(PODS)[0]:
                uid = pod["metadata"]["uid"]
                if uid not in self.workers:
                    self.workers[uid] = PodWorker(self, pod)
                    self.workers[uid].start()
            self._stop.wait(0.1)

    # --- what the API server's pods/log reads --------------------------------------------
    def _container(self, pod: dict):
        w = self.workers.get(pod["metadata"]["uid"])
        return w.container if w else None

    def started(self, pod: dict) -> bool:
        return self._container(pod) is not None

    def stream(self, pod: dict, follow: bool, tail: int | None):
        c = self._container(pod)
        if not follow:
            data = c.logs(stdout=True, stderr=True, tail=tail if tail is not None else "all")
            for _ in range(10):         # a just-exited container's log can lag its state under load
                if data:
                    break
                time.sleep(0.2)
                data = c.logs(stdout=True, stderr=True, tail=tail if tail is not None else "all")
            yield data
            return
        yield from c.logs(stdout=True, stderr=True, stream=True, follow=True,
                          tail=tail if tail is not None else "all")


class PodWorker(threading.Thread):
    def __init__(self, kubelet: Kubelet, pod: dict):
        super().__init__(name=f"pod-{pod['metadata']['name']}", daemon=True)
        self.k, self.ns, self.name = kubelet, pod["metadata"]["namespace"], pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.stop = threading.Event()
        self.container = None
        self.restarts = 0
        self.ready_since: float | None = None

    # --- status writes (the kubelet owns pod status) ---------------------------------------
    def pod(self) -> dict | None:
        p = self.k.store.find(PODS, self.ns, self.name)
        return p if p and p["metadata"]["uid"] == self.uid else None

    def write(self, phase: str, state: dict, ready: bool, last: dict | None = None, started: str | None = None,
              extra_conditions: dict | None = None) -> None:
        pod = self.pod()
        if pod is None:
            return
        old = pod.get("status") or {}
        old_conds = {c["type"]: c for c in old.get("conditions") or []}
        def cond(t, ok):  # noqa: E306
            prev = old_conds.get(t)
            s = "True" if ok else "False"
            return {"type": t, "status": s, "lastProbeTime": None,
                    "lastTransitionTime": prev["lastTransitionTime"] if prev and prev["status"] == s else now()}
        running = "running" in state
        c = pod["spec"]["containers"][0]
        status = {"phase": phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                  "startTime": old.get("startTime") or now(), "qosClass": "BestEffort",
                  "conditions": [cond("PodScheduled", True), cond("Initialized", True),
                                 cond("ContainersReady", ready), cond("Ready", ready)],
                  "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": self.image_id or "",
                                         "containerID": f"docker://{self.container.id}" if self.container else None,
                                         "ready": ready, "started": running, "restartCount": self.restarts,
                                         "state": state, **({"lastState": last} if last else {"lastState": {}})}]}
        status = json.loads(json.dumps(status, default=str))
        for cs in status["containerStatuses"]:
            if cs["containerID"] is None:
                cs.pop("containerID")
        for cnd in status["conditions"]:
            cnd.pop("lastProbeTime")
        if status != old:
            pod["status"] = status
            try:
                self.k.store.update(PODS, self.ns, self.name, pod, "status", check_version=False)
            except ApiError:
                pass

    image_id: str | None = None

    # --- the pod's life ------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._live()
        except Exception as exc:  # noqa: BLE001 - recorded for the tests; the pod stays as it was
            self.k.errors.append(f"{self.name}: {exc!r}")
        finally:
            self._remove()

    def _deleting(self) -> bool:
        pod = self.pod()
        return pod is None or bool(pod["metadata"].get("deletionTimestamp")) or self.stop.is_set()

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the pod is being deleted; False when it is."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self._deleting():
                return False
            time.sleep(min(0.1, max(end - time.monotonic(), 0)))
        return not self._deleting()

    def _live(self) -> None:
        pod = self.pod()
        if pod is None:
            return
        if not pod["spec"].get("nodeName"):
            pod["spec"]["nodeName"] = NODE
            self.k.store.update(PODS, self.ns, self.name, pod, check_version=False)
        spec = pod["spec"]
        c = spec["containers"][0]
        ports = {str(p["containerPort"]): free_port() for p in c.get("ports") or []}
        if ports:
            pod = self.pod()
            pod["metadata"].setdefault("annotations", {})[PORTS_ANNOTATION] = json.dumps(ports)
            self.k.store.update(PODS, self.ns, self.name, pod, check_version=False)
        self.ports = ports
        waiting = lambda r, m="": {"waiting": {"reason": r, **({"message": m} if m else {})}}  # noqa: E731
        self.write("Pending", waiting("ContainerCreating"), False)
        # Env, then image: each failure is a waiting reason, retried with back-off.
        delay = self.k.backoff_seconds
        while True:
            try:
                env = self._env(c)
                break
            except LookupError as exc:
                self.write("Pending", waiting("CreateContainerConfigError", str(exc)), False)
                if not self._sleep(delay):
                    return
        delay = self.k.backoff_seconds
        while not self._pull(c["image"], c.get("imagePullPolicy")):
            if not self._sleep(0.2):
                return
            self.write("Pending", waiting("ImagePullBackOff", f'Back-off pulling image "{c["image"]}"'), False)
            if not self._sleep(delay):
                return
            delay = min(delay * 2, self.k.backoff_cap)
        last = None
        delay = self.k.backoff_seconds
        policy = spec.get("restartPolicy", "Always")
        while True:
            started = now()
            self._start(c, env)
            code = self._run_probes(c, last)
            if code is None:          # deleted while running
                return
            finished = now()
            last = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                   "startedAt": started, "finishedAt": finished,
                                   "containerID": f"docker://{self.container.id}"}}
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                self.write("Succeeded" if code == 0 else "Failed", last, False)
                while not self._deleting():    # the pod keeps its container (and log) until deleted
                    time.sleep(0.2)
                return
            self.restarts += 1
            self.write("Running", waiting("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container="
                                          f"{c['name']} pod={self.name}_{self.ns}({self.uid})"), False, last)
            if not self._sleep(delay):
                return
            delay = min(delay * 2, self.k.backoff_cap)

    def _env(self, c: dict) -> dict[str, str]:
        store, env = self.k.store, {}
        for e in c.get("env") or []:
            src = e.get("valueFrom")
            if src is None:
                env[e["name"]] = e.get("value", "")
            elif "secretKeyRef" in src or "configMapKeyRef" in src:
                ref = src.get("secretKeyRef") or src.get("configMapKeyRef")
                res = SECRETS if "secretKeyRef" in src else CONFIGMAPS
                obj = store.find(res, self.ns, ref["name"])
                kind = "secret" if res is SECRETS else "configmap"
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise LookupError(f'{kind} "{ref["name"]}" not found')
                data = obj.get("data") or {}
                if ref["key"] not in data and not (obj.get("stringData") or {}).get(ref["key"]):
                    if ref.get("optional"):
                        continue
                    raise LookupError(f"couldn't find key {ref['key']} in {kind.capitalize()} {self.ns}/{ref['name']}")
                value = data.get(ref["key"])
                env[e["name"]] = base64.b64decode(value).decode() if res is SECRETS and value is not None else \
                    (value if value is not None else obj["stringData"][ref["key"]])
            elif "fieldRef" in src:
                path = src["fieldRef"]["fieldPath"]
                env[e["name"]] = {"metadata.name": self.name, "metadata.namespace": self.ns,
                                  "status.podIP": "127.0.0.1", "spec.nodeName": NODE}.get(path, "")
        for ef in c.get("envFrom") or []:
            if "secretRef" in ef:
                obj = store.find(SECRETS, self.ns, ef["secretRef"]["name"])
                if obj is None:
                    raise LookupError(f'secret "{ef["secretRef"]["name"]}" not found')
                env.update({k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()})
            elif "configMapRef" in ef:
                obj = store.find(CONFIGMAPS, self.ns, ef["configMapRef"]["name"])
                if obj is None:
                    raise LookupError(f'configmap "{ef["configMapRef"]["name"]}" not found')
                env.update(obj.get("data") or {})
        if self.ports:
            env["PORT"] = str(next(iter(self.ports.values())))
            env.setdefault("BIND", "127.0.0.1")
        return env

    def _pull(self, image: str, policy: str | None) -> bool:
        waiting = {"waiting": {"reason": "ErrImagePull"}}
        try:
            if image in self.k.fail_pulls:
                raise docker.errors.ImageNotFound(f"{image}: injected pull failure")
            if policy == "Always" or (policy is None and image.endswith(":latest")):
                img = self.k.client.images.pull(image)
            else:
                try:
                    img = self.k.client.images.get(image)
                except docker.errors.ImageNotFound:
                    img = self.k.client.images.pull(image)
            self.image_id = img.id
            return True
        except docker.errors.APIError as exc:
            waiting["waiting"]["message"] = f'failed to pull and unpack image "{image}": {exc.explanation or exc}'
            self.write("Pending", waiting, False)
            return False

    def _start(self, c: dict, env: dict[str, str]) -> None:
        self.ready_since = None
        if self.container is not None:
            # A restart reuses the container: creating one copies the image's rootfs with the vfs
            # storage driver (~20 s under load), where the kubelet would make a new one.
            self.container.start()
            return
        name = f"k8s_{c['name']}_{self.name}_{self.ns}_{self.uid[:8]}"
        self.container = self.k.client.containers.run(
            c["image"], command=c.get("args"), entrypoint=c.get("command"), environment=env, detach=True,
            name=name, network_mode="host", labels={LABEL: self.k.cluster_id, "io.kubernetes.pod.name": self.name,
                                                    "io.kubernetes.pod.namespace": self.ns},
            working_dir=c.get("workingDir"), stop_signal="SIGTERM")

    def _run_probes(self, c: dict, last: dict | None) -> int | None:
        """Probe until the container exits (its exit code) or the pod is deleted (None)."""
        readiness, liveness = c.get("readinessProbe"), c.get("livenessProbe")
        started_at, started = time.monotonic(), now()
        ready, live_failures, successes, failures = readiness is None, 0, 0, 0
        next_ready = started_at + (readiness or {}).get("initialDelaySeconds", 0)
        next_live = started_at + (liveness or {}).get("initialDelaySeconds", 0)
        delay = next((v for k, v in self.k.readiness_delay.items() if k == c["image"]), 0)
        self.write("Running", {"running": {"startedAt": started}}, ready and not delay, last)
        while True:
            if self._deleting():
                return None
            self.container.reload()
            if self.container.status in ("exited", "dead", "stopped"):
                # As the kubelet does, report Terminated only once the runtime has finished with the
                # container: under load Podman can show "exited" before conmon has written the log,
                # and a pods/log read at once (dagster-k8s does) would get nothing.
                try:
                    code = self.container.wait(timeout=30).get("StatusCode")
                except Exception:  # noqa: BLE001 - the state's exit code is the answer then
                    code = None
                return int(code if code is not None else self.container.attrs["State"].get("ExitCode", 1))
            t = time.monotonic()
            if readiness and t >= next_ready:
                ok = self._probe(readiness) and t - started_at >= delay
                successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
                if ok and successes >= readiness.get("successThreshold", 1):
                    ready = True
                elif not ok and failures >= readiness.get("failureThreshold", 3):
                    ready = False
                next_ready = t + readiness.get("periodSeconds", 10)
            elif not readiness and not ready and t - started_at >= delay:
                ready = True
            if liveness and t >= next_live:
                live_failures = 0 if self._probe(liveness) else live_failures + 1
                if live_failures >= liveness.get("failureThreshold", 3):
                    self.container.kill()
                    continue
                next_live = t + liveness.get("periodSeconds", 10)
            self.write("Running", {"running": {"startedAt": started}}, ready, last)
            time.sleep(0.1)

    def _probe(self, probe: dict) -> bool:
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "httpGet" in probe:
                g = probe["httpGet"]
                port = self._port(g["port"])
                r = httpx.get(f"{g.get('scheme', 'HTTP').lower()}://127.0.0.1:{port}{g.get('path', '/')}",
                              timeout=timeout)
                return 200 <= r.status_code < 400
            if "tcpSocket" in probe:
                with socket.create_connection(("127.0.0.1", self._port(probe["tcpSocket"]["port"])), timeout):
                    return True
            if "exec" in probe:
                return self.container.exec_run(probe["exec"]["command"]).exit_code == 0
        except (httpx.HTTPError, OSError, docker.errors.APIError):
            return False
        return False

    def _port(self, port) -> int:
        pod = self.pod() or {}
        if isinstance(port, str) and not port.isdigit():
            port = next(p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports") or []
                        if p.get("name") == port)
        return int(self.ports.get(str(port), port))

    def _pre_stop(self, pod: dict | None) -> None:
        """lifecycle.preStop (sleep or exec) runs before SIGTERM, as the kubelet runs it: the
        time a pod gives the proxies to take it out of their upstreams."""
        hook = (((pod or {}).get("spec", {}).get("containers") or [{}])[0].get("lifecycle") or {}).get("preStop")
        if not hook:
            return
        if "sleep" in hook:
            time.sleep(float(hook["sleep"]["seconds"]))
        elif "exec" in hook:
            self.container.exec_run(hook["exec"]["command"])

    def _remove(self) -> None:
        if self._deleting():
            pod = self.pod()
            grace = (pod or {}).get("spec", {}).get("terminationGracePeriodSeconds", 30)
            try:
                if self.container is not None:
                    self._pre_stop(pod)
                    self.container.stop(timeout=min(grace, 10))
                    self.container.remove(force=True)
            except docker.errors.APIError:
                pass
            if pod is not None:
                try:
                    self.k.store.delete(PODS, self.ns, self.name)
                except ApiError:
                    pass
            self.k.workers.pop(self.uid, None)
        elif self.container is not None:   # the worker died: its container goes with it
            try:
                self.container.remove(force=True)
            except docker.errors.APIError:
                pass
