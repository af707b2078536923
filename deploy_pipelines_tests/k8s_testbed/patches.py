"""The three PATCH content types: JSON patch (RFC 6902, the `jsonpatch` package), JSON merge patch
(RFC 7386) and strategic merge patch, whose lists merge by the key the Kubernetes types declare
(`patchMergeKey`) instead of being replaced whole."""

from __future__ import annotations

import copy

import jsonpatch

from deploy_pipelines_tests.k8s_testbed.store import ApiError

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

# The list fields of the kinds served whose patchStrategy is "merge", by field name: the key
# their items merge on (from the Go types' struct tags).
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name", "conditions": "type",
    "ports": "containerPort", "tolerations": "key", "hostAliases": "ip", "finalizers": None,
    "ownerReferences": "uid",
}
# Service ports merge on `port`, container ports on `containerPort`: the same field name.
SERVICE_PORT_KEY = "port"


def apply_patch(content_type: str, current: dict, patch, kind: str) -> dict:
    content_type = (content_type or "").split(";")[0].strip()
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            return jsonpatch.apply_patch(current, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}",
                           None) from None
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "json: cannot unmarshal array into Go value of type map[string]interface {}")
    if content_type == MERGE_PATCH:
        return merge_patch(current, patch)
    if content_type == STRATEGIC:
        if kind in ("Rollout", "VirtualService", "DestinationRule"):
            raise ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                           f'accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY}')
        return strategic_merge(current, patch, kind == "Service")
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media "
                   f"types include: {JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC}, {APPLY}")


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge(target, patch, service: bool = False, field: str | None = None):
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: v for k, v in patch.items() if k != "$patch"}
        if patch.get("$patch") == "delete":
            return None
        out = copy.deepcopy(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if k.startswith("$"):
                continue
            if v is None:
                out.pop(k, None)
                continue
            merged = strategic_merge(out.get(k), v, service, k)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        return out
    if isinstance(patch, list) and field in MERGE_KEYS and isinstance(target, list):
        key = SERVICE_PORT_KEY if (field == "ports" and service) else MERGE_KEYS[field]
        if key is None:       # a set of scalars (finalizers)
            return list(dict.fromkeys([*target, *patch]))
        out = copy.deepcopy(target)
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                out.append(copy.deepcopy(item))
                continue
            at = next((i for i, cur in enumerate(out) if isinstance(cur, dict) and cur.get(key) == item[key]), None)
            if item.get("$patch") == "delete":
                if at is not None:
                    out.pop(at)
            elif at is None:
                out.append({k: v for k, v in item.items() if k != "$patch"})
            else:
                out[at] = strategic_merge(out[at], item, service)
        return out
    return copy.deepcopy(patch)
