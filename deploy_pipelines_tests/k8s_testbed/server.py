"""The HTTP side of the test bed: kube-apiserver's REST paths over a threaded stdlib server on
127.0.0.1 (HTTP/1.1 keep-alive; watches and followed logs as chunked streams), discovery,
server-side Table printing for kubectl, and faults on demand (5xx answers, dropped watches)."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from deploy_pipelines_tests.k8s_testbed import resources as R
from deploy_pipelines_tests.k8s_testbed.patches import apply_patch
from deploy_pipelines_tests.k8s_testbed.store import ApiError, Store, now
from deploy_pipelines_tests.k8s_testbed.validation import prune_nulls, validate

# Kinds whose DELETE only marks them: a kubelet (or the test bed's) finishes the job.
GRACEFUL = {"Pod"}


class Faults:
    """Failures the tests ask for: the next n requests whose path contains `match` answer `code`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules: list[list] = []
        self.failed = 0

    def fail_next(self, count: int, code: int = 500, match: str = "", method: str | None = None) -> None:
        with self.lock:
            self.rules.append([count, code, match, method])

    def take(self, method: str, path: str) -> int | None:
        with self.lock:
            for rule in self.rules:
                if rule[0] > 0 and rule[2] in path and (rule[3] in (None, method)):
                    rule[0] -= 1
                    self.failed += 1
                    return rule[1]
        return None


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, store: Store, logs, port: int = 0):
        super().__init__(("127.0.0.1", port), Handler)
        self.store, self.logs, self.faults = store, logs, Faults()
        self.requests: list[tuple[str, str]] = []     # (method, path): what the clients did

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer

    def log_message(self, *args):   # the tests read server.requests instead
        pass

    # --- plumbing ------------------------------------------------------------------------
    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            import yaml

            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ApiError(400, "BadRequest", f"the body of the request could not be decoded: {exc}") from None

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        self.server.requests.append((method, self.path))
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            code = self.server.faults.take(method, url.path)
            if code is not None:
                raise ApiError(code, {500: "InternalError", 503: "ServiceUnavailable", 429: "TooManyRequests"}
                               .get(code, "InternalError"), f"an error on the server (\"injected fault {code}\") has "
                               "prevented the request from succeeding")
            self._route(method, [p for p in url.path.split("/") if p], query)
        except ApiError as exc:
            self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = lambda self: self._handle("GET")          # noqa: E731
    do_POST = lambda self: self._handle("POST")        # noqa: E731
    do_PUT = lambda self: self._handle("PUT")          # noqa: E731
    do_PATCH = lambda self: self._handle("PATCH")      # noqa: E731
    do_DELETE = lambda self: self._handle("DELETE")    # noqa: E731

    # --- routing -------------------------------------------------------------------------
    def _route(self, method: str, parts: list[str], q: dict) -> None:
        if parts == ["version"]:
            return self._send(200, R.SERVER_VERSION)
        if parts in (["healthz"], ["readyz"], ["livez"]):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            return self.wfile.write(data)
        if parts == ["api"]:
            return self._send(200, R.api_versions())
        if parts == ["apis"]:
            return self._send(200, R.api_group_list())
        if parts and parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                doc = R.api_group(parts[1])
                return self._send(200, doc) if doc else self._not_found()
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return self._not_found()
        if not rest:
            doc = R.resource_list(group, version)
            return self._send(200, doc) if doc else self._not_found()
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = R.BY_PATH.get((group, version, rest[0]))
        if res is None:
            return self._not_found()
        if res.namespaced is False and ns is None and len(rest) >= 2:
            ns = ""
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if not res.namespaced:
            ns = ""
        if name is None:
            if method == "GET":
                return self._watch(res, ns, q) if str(q.get("watch")).lower() in ("true", "1") else self._list(res, ns, q)
            if method == "POST":
                return self._create(res, ns, q)
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")
        if ns is None:
            return self._not_found()
        if sub == "log":
            return self._log(res, ns, name, q)
        if sub == "scale":
            return self._scale(method, res, ns, name)
        if sub not in (None, "status"):
            return self._not_found()
        if method == "GET":
            return self._send(200, self.server.store.get(res, ns, name))
        if method == "PUT":
            return self._put(res, ns, name, sub, q)
        if method == "PATCH":
            return self._patch(res, ns, name, sub, q)
        if method == "DELETE":
            return self._delete(res, ns, name, q)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _not_found(self) -> None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    # --- verbs ---------------------------------------------------------------------------
    def _list(self, res: R.Resource, ns: str | None, q: dict) -> None:
        items, rv = self.server.store.list(res, ns, q.get("labelSelector"), q.get("fieldSelector"))
        if "as=Table" in (self.headers.get("Accept") or ""):
            return self._send(200, table(res, items, rv, q.get("includeObject", "Metadata")))
        self._send(200, {"kind": f"{res.kind}List", "apiVersion": res.group_version,
                         "metadata": {"resourceVersion": rv}, "items": items})

    def _watch(self, res: R.Resource, ns: str | None, q: dict) -> None:
        store = self.server.store
        w = store.watch(res, ns, q.get("labelSelector"), q.get("fieldSelector"), q.get("resourceVersion"))
        timeout = float(q.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    event = w.events.get(timeout=min(left, 1.0))
                except Exception:  # noqa: BLE001 - queue.Empty: keep the stream open
                    continue
                if event is None:        # dropped on purpose (fault) or server stopping
                    self.close_connection = True
                    return
                self._chunk(json.dumps(event).encode() + b"\n")
                if event["type"] == "ERROR":
                    break
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            store.unwatch(w)

    def _create(self, res: R.Resource, ns: str, q: dict) -> None:
        obj = prune_nulls(self._body() or {})
        obj.setdefault("apiVersion", res.group_version)
        obj.setdefault("kind", res.kind)
        self._check_namespace(res, ns)
        validate(res, obj)
        obj.pop("status", None)
        if q.get("dryRun") == "All":
            return self._send(201, obj)
        self._send(201, self.server.store.create(res, ns, obj))

    def _check_namespace(self, res: R.Resource, ns: str) -> None:
        if res.namespaced and self.server.store.find(R.BY_PATH[("", "v1", "namespaces")], "", ns) is None:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})

    def _put(self, res: R.Resource, ns: str, name: str, sub: str | None, q: dict) -> None:
        obj = prune_nulls(self._body() or {})
        if (obj.get("metadata") or {}).get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        current = self.server.store.get(res, ns, name)
        if sub == "status":
            merged = {**current, "status": obj.get("status")}
            merged["metadata"] = {**current["metadata"], "resourceVersion": (obj.get("metadata") or {}).get(
                "resourceVersion", current["metadata"]["resourceVersion"])}
            validate(res, merged)
            return self._send(200, self.server.store.update(res, ns, name, merged, "status"))
        validate(res, {**obj, "status": current.get("status")} if "status" in current else obj)
        self._send(200, self.server.store.update(res, ns, name, obj))

    def _patch(self, res: R.Resource, ns: str, name: str, sub: str | None, q: dict) -> None:
        patch = self._body()
        current = self.server.store.get(res, ns, name)
        patched = prune_nulls(apply_patch(self.headers.get("Content-Type"), copy.deepcopy(current), patch, res.kind))
        # A patch that names a resourceVersion is a conditional write, like a PUT.
        if not ((patch or {}) if isinstance(patch, dict) else {}).get("metadata", {}).get("resourceVersion"):
            patched.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        validate(res, patched)
        self._send(200, self.server.store.update(res, ns, name, patched, sub))

    def _delete(self, res: R.Resource, ns: str, name: str, q: dict) -> None:
        body = self._body() or {}
        store = self.server.store
        grace = body.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
        if res.kind in GRACEFUL and str(grace) != "0":
            return self._send(200, store.mark_deleting(res, ns, name))
        obj = store.delete(res, ns, name)
        policy = body.get("propagationPolicy") or q.get("propagationPolicy") or "Background"
        if policy == "Orphan":
            orphan(store, obj["metadata"]["uid"])
        self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": res.group, "kind": res.plural,
                                     "uid": obj["metadata"]["uid"]}})

    def _scale(self, method: str, res: R.Resource, ns: str, name: str) -> None:
        store = self.server.store
        obj = store.get(res, ns, name)
        if method in ("PUT", "PATCH"):
            body = self._body() or {}
            replicas = (body.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value',
                               {"name": name, "group": "autoscaling", "kind": "Scale", "causes": [
                                   {"reason": "FieldValueInvalid", "message": "must be greater than or equal to 0",
                                    "field": "spec.replicas"}]})
            obj["spec"]["replicas"] = replicas
            obj = store.update(res, ns, name, obj)
        from deploy_pipelines_tests.k8s_testbed.store import selector_of

        sel = ",".join(f"{k}={v}" for op, k, v in selector_of(obj["spec"].get("selector")) if op == "=")
        self._send(200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                         "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                                      "creationTimestamp")},
                         "spec": {"replicas": obj["spec"].get("replicas", 1)},
                         "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": sel}})

    def _log(self, res: R.Resource, ns: str, name: str, q: dict) -> None:
        pod = self.server.store.get(res, ns, name)
        logs = self.server.logs
        if logs is None or not logs.started(pod):
            raise ApiError(400, "BadRequest", f'container "{pod["spec"]["containers"][0]["name"]}" in pod "{name}" '
                           "is waiting to start: ContainerCreating")
        follow = str(q.get("follow")).lower() in ("true", "1")
        tail = int(q["tailLines"]) if q.get("tailLines") else None
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for data in logs.stream(pod, follow=follow, tail=tail):
                if data:
                    self._chunk(data)
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def orphan(store: Store, uid: str) -> None:
    for res in R.RESOURCES:
        for obj in store.list(res)[0]:
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                obj["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                store.update(res, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], obj,
                             check_version=False)


# --- server-side printing (kubectl get) ----------------------------------------------------------

def _age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    s = int((datetime.now(timezone.utc) - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc)).total_seconds())
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def _col(name, type_="string", priority=0, fmt=""):
    return {"name": name, "type": type_, "format": fmt, "description": name, "priority": priority}


def _pod_row(p: dict) -> list:
    st = p.get("status") or {}
    cs = st.get("containerStatuses") or []
    reason = st.get("phase", "Pending")
    for c in cs:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    ready = sum(1 for c in cs if c.get("ready"))
    return [p["metadata"]["name"], f"{ready}/{len(p['spec']['containers'])}", reason,
            sum(c.get("restartCount", 0) for c in cs), _age(p["metadata"].get("creationTimestamp")),
            st.get("podIP", "<none>"), p["spec"].get("nodeName", "<none>"), "<none>", "<none>"]


def _deploy_row(d: dict) -> list:
    st, spec = d.get("status") or {}, d["spec"]
    containers = spec["template"]["spec"]["containers"]
    sel = ",".join(f"{k}={v}" for k, v in (spec["selector"].get("matchLabels") or {}).items())
    return [d["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), _age(d["metadata"].get("creationTimestamp")),
            ",".join(c["name"] for c in containers), ",".join(c["image"] for c in containers), sel]


TABLES = {
    "Pod": ([_col("Name", fmt="name"), _col("Ready"), _col("Status"), _col("Restarts", "integer"), _col("Age"),
             _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
             _col("Readiness Gates", priority=1)], _pod_row),
    "Deployment": ([_col("Name", fmt="name"), _col("Ready"), _col("Up-to-date", "integer"),
                    _col("Available", "integer"), _col("Age"), _col("Containers", priority=1),
                    _col("Images", priority=1), _col("Selector", priority=1)], _deploy_row),
}


def table(res: R.Resource, items: list[dict], rv: str, include: str) -> dict:
    columns, row = TABLES.get(res.kind, ([_col("Name", fmt="name"), _col("Age")],
                                         lambda o: [o["metadata"]["name"], _age(o["metadata"].get("creationTimestamp"))]))
    rows = []
    for o in items:
        obj = o if include == "Object" else {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                             "metadata": o["metadata"]}
        rows.append({"cells": row(o), "object": None if include == "None" else obj})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
            "columnDefinitions": columns, "rows": rows}


__all__ = ["ApiServer", "now"]
