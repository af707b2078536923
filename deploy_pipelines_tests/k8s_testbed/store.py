"""The test bed's etcd: objects by (resource, namespace, name), one resourceVersion counter,
generation bumped on spec changes only, optimistic concurrency (409 on a stale resourceVersion),
and watch streams replayed from any resourceVersion still in the history (410 Gone before it)."""

from __future__ import annotations

import copy
import json
import queue
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from deploy_pipelines_tests.k8s_testbed.defaults import apply_defaults
from deploy_pipelines_tests.k8s_testbed.resources import Resource

# Kinds whose spec changes bump metadata.generation (the rest keep generation absent, as the
# real server does for ConfigMaps, Secrets, Services, Endpoints).
GENERATION_KINDS = {"Deployment", "ReplicaSet", "Job", "Rollout", "VirtualService", "DestinationRule"}
HISTORY = 20000


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An answer other than success, rendered as a metav1.Status body."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.resource_name} "{name}" not found',
                    {"name": name, "group": res.group, "kind": res.plural})


def conflict(res: Resource, name: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.resource_name} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": res.group, "kind": res.plural})


# --- label selectors -------------------------------------------------------------------------

_REQ = re.compile(r"\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|(in|notin)\s*\(([^)]*)\))?\s*")


def parse_selector(text: str | None) -> list[tuple]:
    """`a=b,c!=d,e in (x,y),f notin (z),g,!h` -> requirements; raises ApiError 400 when malformed."""
    reqs: list[tuple] = []
    text = (text or "").strip()
    pos = 0
    while pos < len(text):
        m = _REQ.match(text, pos)
        if not m or m.end() == pos:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {text[pos:]!r}")
        neg, key, op, value, setop, values = m.groups()
        if neg:
            reqs.append(("!", key, None))
        elif op:
            reqs.append(("!=" if op == "!=" else "=", key, value))
        elif setop:
            reqs.append((setop, key, {v.strip() for v in values.split(",") if v.strip()}))
        else:
            reqs.append(("exists", key, None))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise ApiError(400, "BadRequest", f"unable to parse requirement: {text!r}")
            pos += 1
    return reqs


def matches(labels: dict | None, reqs: list[tuple]) -> bool:
    labels = labels or {}
    for op, key, value in reqs:
        have = labels.get(key)
        ok = {"=": lambda: have == value, "!=": lambda: have != value,
              "in": lambda: have is not None and have in value, "notin": lambda: have not in value,
              "exists": lambda: key in labels, "!": lambda: key not in labels}[op]()
        if not ok:
            return False
    return True


def selector_of(label_selector: dict | None) -> list[tuple]:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as requirements."""
    sel = label_selector or {}
    reqs = [("=", k, v) for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}[e["operator"]]
        reqs.append((op, e["key"], set(e.get("values") or [])))
    return reqs


def field_matches(obj: dict, text: str | None) -> bool:
    """The field selectors clients use: metadata.name, metadata.namespace, status.phase."""
    for part in filter(None, (text or "").split(",")):
        key, op, value = re.match(r"([^=!]+)(==|=|!=)(.*)", part).groups()
        cur = obj
        for k in key.split("."):
            cur = (cur or {}).get(k) if isinstance(cur, dict) else None
        if (str(cur) == value) != (op != "!="):
            return False
    return True


# --- the store -------------------------------------------------------------------------------

@dataclass
class Watch:
    resource: str
    namespace: str | None
    selector: list[tuple]
    fields: str | None
    events: "queue.Queue[dict | None]" = field(default_factory=queue.Queue)

    def wants(self, key: str, obj: dict) -> bool:
        md = obj["metadata"]
        return (key == self.resource and (not self.namespace or md.get("namespace") == self.namespace)
                and matches(md.get("labels"), self.selector) and field_matches(obj, self.fields))


class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 0
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.history: deque[tuple[int, str, str, dict]] = deque(maxlen=HISTORY)
        self.watches: list[Watch] = []

    # Every object handed out is a copy: callers mutate freely.
    def get(self, res: Resource, ns: str, name: str) -> dict:
        with self.lock:
            obj = self.objects.get((res.key, ns, name))
            if obj is None:
                raise not_found(res, name)
            return copy.deepcopy(obj)

    def find(self, res: Resource, ns: str, name: str) -> dict | None:
        with self.lock:
            obj = self.objects.get((res.key, ns, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, res: Resource, ns: str | None = None, selector: str | list | None = None,
             fields: str | None = None) -> tuple[list[dict], str]:
        reqs = parse_selector(selector) if isinstance(selector, (str, type(None))) else selector
        with self.lock:
            items = [copy.deepcopy(o) for (k, n, _), o in sorted(self.objects.items())
                     if k == res.key and (ns is None or n == ns) and matches(o["metadata"].get("labels"), reqs)
                     and field_matches(o, fields)]
            return items, str(self.rv)

    def _emit(self, key: str, type_: str, obj: dict) -> None:
        self.history.append((self.rv, key, type_, obj))
        for w in list(self.watches):
            if w.wants(key, obj):
                w.events.put({"type": type_, "object": copy.deepcopy(obj)})
        self.changed.notify_all()

    def _stamp(self, obj: dict) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def create(self, res: Resource, ns: str, obj: dict) -> dict:
        with self.lock:
            md = obj.setdefault("metadata", {})
            if not md.get("name") and md.get("generateName"):
                md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
            name = md.get("name")
            if (res.key, ns, name) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{res.resource_name} "{name}" already exists',
                               {"name": name, "group": res.group, "kind": res.plural})
            if res.namespaced:
                md["namespace"] = ns
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now()
            md.pop("deletionTimestamp", None)
            if res.kind in GENERATION_KINDS:
                md["generation"] = 1
            obj["apiVersion"], obj["kind"] = res.group_version, res.kind
            apply_defaults(res.kind, obj)
            self._stamp(obj)
            self.objects[(res.key, ns, name)] = obj
            self._emit(res.key, "ADDED", obj)
            return copy.deepcopy(obj)

    def update(self, res: Resource, ns: str, name: str, obj: dict, subresource: str | None = None,
               check_version: bool = True) -> dict:
        """PUT semantics: the main resource ignores status, /status ignores everything else."""
        with self.lock:
            old = self.objects.get((res.key, ns, name))
            if old is None:
                raise not_found(res, name)
            md = obj.setdefault("metadata", {})
            if check_version and md.get("resourceVersion") and md["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if subresource == "status":
                new = copy.deepcopy(old)
                new["status"] = obj.get("status")
            else:
                new = copy.deepcopy(obj)
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
                for k in ("uid", "creationTimestamp", "namespace", "deletionTimestamp", "generation"):
                    if k in old["metadata"]:
                        new["metadata"][k] = old["metadata"][k]
                new["metadata"]["name"] = name
                new["apiVersion"], new["kind"] = res.group_version, res.kind
                if res.kind in GENERATION_KINDS and _spec(new) != _spec(old):
                    new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            if _same(new, old):
                return copy.deepcopy(old)     # a no-op write keeps its resourceVersion, like the real server
            self._stamp(new)
            self.objects[(res.key, ns, name)] = new
            self._emit(res.key, "MODIFIED", new)
            return copy.deepcopy(new)

    def mark_deleting(self, res: Resource, ns: str, name: str) -> dict:
        with self.lock:
            obj = self.objects.get((res.key, ns, name))
            if obj is None:
                raise not_found(res, name)
            if "deletionTimestamp" not in obj["metadata"]:
                obj = copy.deepcopy(obj)
                obj["metadata"]["deletionTimestamp"] = now()
                self._stamp(obj)
                self.objects[(res.key, ns, name)] = obj
                self._emit(res.key, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, res: Resource, ns: str, name: str) -> dict:
        with self.lock:
            obj = self.objects.pop((res.key, ns, name), None)
            if obj is None:
                raise not_found(res, name)
            self._stamp(obj)
            self._emit(res.key, "DELETED", obj)
            return copy.deepcopy(obj)

    def watch(self, res: Resource, ns: str | None, selector: str | None, fields: str | None,
              since: str | None) -> Watch:
        """Register a watch. Without a resourceVersion (or "0") the stream opens with a synthetic
        ADDED per existing object, as the real server's; with one, it replays what came after it."""
        w = Watch(res.key, ns, parse_selector(selector), fields)
        with self.lock:
            if not since or since == "0":
                for (key, _, _), obj in sorted(self.objects.items()):
                    if w.wants(key, obj):
                        w.events.put({"type": "ADDED", "object": copy.deepcopy(obj)})
            else:
                start = int(since)
                oldest = self.history[0][0] if self.history else self.rv + 1
                if start < oldest - 1 and len(self.history) == self.history.maxlen:
                    w.events.put({"type": "ERROR", "object": ApiError(
                        410, "Expired", f"too old resource version: {start} ({oldest})").status()})
                    return w
                for rv, key, type_, obj in self.history:
                    if rv > start and w.wants(key, obj):
                        w.events.put({"type": type_, "object": copy.deepcopy(obj)})
            self.watches.append(w)
        return w

    def unwatch(self, w: Watch) -> None:
        with self.lock:
            if w in self.watches:
                self.watches.remove(w)

    def drop_watches(self) -> int:
        """Fault: end every open watch stream (the client sees its stream close)."""
        with self.lock:
            dropped = list(self.watches)
            self.watches.clear()
        for w in dropped:
            w.events.put(None)
        return len(dropped)


def _spec(obj: dict):
    return json.dumps({k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")},
                      sort_keys=True)


def _same(a: dict, b: dict) -> bool:
    strip = lambda o: {**o, "metadata": {k: v for k, v in o["metadata"].items() if k != "resourceVersion"}}  # noqa: E731
    return json.dumps(strip(a), sort_keys=True) == json.dumps(strip(b), sort_keys=True)
