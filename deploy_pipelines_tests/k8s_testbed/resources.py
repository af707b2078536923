"""The kinds the test bed serves and the discovery documents that announce them, shaped as
kube-apiserver's legacy (non-aggregated) discovery: client-go falls back to it when the answer's
Content-Type is plain application/json."""

from __future__ import annotations

from dataclasses import dataclass

SERVER_VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0-testbed", "gitCommit": "0" * 40,
                  "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                  "compiler": "gc", "platform": "linux/amd64"}


@dataclass(frozen=True)
class Resource:
    group: str          # "" for core
    version: str
    plural: str
    kind: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    subresources: tuple[str, ...] = ()
    crd: str | None = None      # file under fixtures/kubernetes/crds/ holding its schema

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.group_version}/{self.plural}"

    @property
    def qualified(self) -> str:
        """How error messages name the kind: Deployment.apps, Pod."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def resource_name(self) -> str:
        """How conflicts name the resource: deployments.apps, pods."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", ("ns",), namespaced=False, subresources=("status",)),
    Resource("", "v1", "pods", "Pod", ("po",), subresources=("status", "log")),
    Resource("", "v1", "services", "Service", ("svc",), subresources=("status",)),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "configmaps", "ConfigMap", ("cm",)),
    Resource("", "v1", "endpoints", "Endpoints", ("ep",)),
    Resource("", "v1", "events", "Event", ("ev",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", ("sa",)),
    Resource("apps", "v1", "deployments", "Deployment", ("deploy",), subresources=("status", "scale")),
    Resource("apps", "v1", "replicasets", "ReplicaSet", ("rs",), subresources=("status", "scale")),
    Resource("batch", "v1", "jobs", "Job", subresources=("status",)),
    Resource("argoproj.io", "v1alpha1", "rollouts", "Rollout", ("ro",), subresources=("status", "scale"),
             crd="argo-rollouts-rollout.yaml"),
    Resource("networking.istio.io", "v1beta1", "virtualservices", "VirtualService", ("vs",),
             subresources=("status",), crd="istio-virtualservice.yaml"),
    Resource("networking.istio.io", "v1beta1", "destinationrules", "DestinationRule", ("dr",),
             subresources=("status",), crd="istio-destinationrule.yaml"),
]

BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND = {(r.group_version, r.kind): r for r in RESOURCES}


def api_versions() -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def _groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group and r.version not in groups.setdefault(r.group, []):
            groups[r.group].append(r.version)
    return groups


def api_group(group: str) -> dict | None:
    versions = _groups().get(group)
    if not versions:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(g) for g in _groups()]}


def resource_list(group: str, version: str) -> dict | None:
    mine = [r for r in RESOURCES if r.group == group and r.version == version]
    if not mine:
        return None
    out = []
    for r in mine:
        out.append({"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced, "kind": r.kind,
                    "verbs": VERBS, **({"shortNames": list(r.short_names)} if r.short_names else {})})
        for sub in r.subresources:
            out.append({"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced,
                        "kind": "Scale" if sub == "scale" else r.kind,
                        "verbs": ["get"] if sub == "log" else ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": out}
