"""Defaulting, as the real server applies it on create (pkg/apis/*/v1/defaults.go): the fields a
client reads back without having sent them."""

from __future__ import annotations


def _pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for c in spec.get("containers") or []:
        image = c.get("image", "")
        untagged = "@" not in image and ":" not in image.rsplit("/", 1)[-1]
        c.setdefault("imagePullPolicy", "Always" if untagged or image.endswith(":latest") else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        for p in c.get("ports") or []:
            p.setdefault("protocol", "TCP")


def apply_defaults(kind: str, obj: dict) -> None:
    spec = obj.get("spec")
    if kind == "Pod":
        _pod_spec(spec)
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif kind in ("Deployment", "ReplicaSet", "Job"):
        obj["status"] = {"replicas": 0} if kind == "ReplicaSet" else {}   # replicas is required there
        template = spec.get("template") or {}
        _pod_spec(template.setdefault("spec", {}))
        if kind == "Deployment":
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                ru.setdefault("maxSurge", "25%")
                ru.setdefault("maxUnavailable", "25%")
        elif kind == "ReplicaSet":
            spec.setdefault("replicas", 1)
        else:
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            spec.setdefault("completionMode", "NonIndexed")
            spec.setdefault("suspend", False)
    elif kind == "Service":
        obj["status"] = {"loadBalancer": {}}
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
