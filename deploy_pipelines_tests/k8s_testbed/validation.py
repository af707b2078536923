"""Every write checked as kube-apiserver checks it, answered as it answers:

- built-in kinds against the v1.33 OpenAPI spec (shared/fixtures/kubernetes/swagger.json) made
  strict (`additionalProperties: false` wherever properties are listed, as openapi2jsonschema
  --strict does): an unknown field is a 400 "strict decoding error" (the server's answer under
  fieldValidation=Strict, which the test bed applies by default so a typo fails a test instead of
  being dropped), a wrong type a 400 decode error, a missing required field or a rule of the
  kind's validation (names, selector vs template labels, ports, replicas) a 422 Invalid Status
  with one cause per problem;
- custom objects (Rollout, VirtualService, DestinationRule) against their CRD's openAPIV3Schema:
  every violation a 422 Invalid, as CRD validation answers.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from pathlib import Path

import jsonschema
import yaml

from deploy_pipelines_tests.k8s_testbed.resources import Resource
from deploy_pipelines_tests.k8s_testbed.store import ApiError

FIXTURES = Path(os.environ.get("DEPLOY_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared")) / \
    "fixtures" / "kubernetes"

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Services, namespaces and containers are named by DNS-1123 labels; the rest by subdomains.
LABEL_NAMED = {"Service", "Namespace"}


def _strict(node):
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@functools.lru_cache(maxsize=1)
def _definitions() -> dict:
    defs = json.loads((FIXTURES / "swagger.json").read_text())["definitions"]
    # What the JSON wire format accepts for these string-typed wrappers.
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["string", "integer"]}
    defs["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {"type": ["string", "number"]}
    return _strict(defs)


@functools.lru_cache(maxsize=None)
def _builtin_validator(kind: str, group_version: str):
    defs = _definitions()
    group, _, version = group_version.rpartition("/")
    for name, d in defs.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            if (gvk["group"], gvk["version"], gvk["kind"]) == (group, version, kind):
                return jsonschema.Draft4Validator({"$ref": f"#/definitions/{name}", "definitions": defs})
    raise KeyError(f"{group_version} {kind} not in the spec")


@functools.lru_cache(maxsize=None)
def _crd_validator(crd_file: str, version: str):
    crd = yaml.safe_load((FIXTURES / "crds" / crd_file).read_text())
    schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    schema = _strict(copy.deepcopy(schema))
    # Every object carries these whether or not the CRD's schema lists them (Istio's do not).
    schema.setdefault("properties", {}).update({"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                                "metadata": {"type": "object"}})
    return jsonschema.Draft4Validator(schema)


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _invalid(res: Resource, name: str, causes: list[dict]) -> ApiError:
    text = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    if len(causes) > 1:
        text = f"[{text}]"
    return ApiError(422, "Invalid", f'{res.qualified} "{name}" is invalid: {text}',
                    {"name": name, "group": res.group, "kind": res.kind, "causes": causes})


def _cause(reason: str, field: str, message: str) -> dict:
    return {"reason": reason, "message": message, "field": field}


def prune_nulls(node):
    """JSON null is "unset" to the server's decoder."""
    if isinstance(node, dict):
        return {k: prune_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [prune_nulls(v) for v in node]
    return node


def validate(res: Resource, obj: dict) -> None:
    name = (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName") or ""
    if obj.get("kind") != res.kind or obj.get("apiVersion") != res.group_version:
        raise ApiError(400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) does not match "
                       f"the expected API version ({res.group_version}) or kind ({obj.get('kind')} vs {res.kind})")
    if res.crd:
        errors = sorted(_crd_validator(res.crd, res.version).iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            raise _invalid(res, name, [_cause("FieldValueInvalid", _path(e.path) or "<root>",
                                              f"Invalid value: {json.dumps(e.instance)[:80]}: {e.message}")
                                       for e in errors])
        return
    errors = sorted(_builtin_validator(res.kind, res.group_version).iter_errors(obj), key=lambda e: list(e.path))
    unknown = [e for e in errors if e.validator == "additionalProperties"]
    if unknown:
        e = unknown[0]
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))[0]
        raise ApiError(400, "BadRequest", f'{res.kind} in version "{res.version}" cannot be handled as a '
                       f'{res.kind}: strict decoding error: unknown field "{_path([*e.path, extra])}"')
    typed = [e for e in errors if e.validator in ("type", "format")]
    if typed:
        e = typed[0]
        raise ApiError(400, "BadRequest", f'{res.kind} in version "{res.version}" cannot be handled as a '
                       f"{res.kind}: json: cannot unmarshal {type(e.instance).__name__} into Go struct field "
                       f"{_path(e.path)} of type {e.validator_value}")
    causes = []
    for e in errors:
        if e.validator == "required":
            missing = re.search(r"'([^']+)' is a required property", e.message).group(1)
            causes.append(_cause("FieldValueRequired", _path([*e.path, missing]), "Required value"))
        elif e.validator == "enum":
            causes.append(_cause("FieldValueNotSupported", _path(e.path),
                                 f"Unsupported value: {json.dumps(e.instance)}"))
        else:
            causes.append(_cause("FieldValueInvalid", _path(e.path), f"Invalid value: {e.message}"))
    causes += _semantics(res, obj)
    if causes:
        raise _invalid(res, name, causes)


def _semantics(res: Resource, obj: dict) -> list[dict]:
    """The rules of pkg/apis/*/validation the release paths run into."""
    causes: list[dict] = []
    md = obj.get("metadata") or {}
    name = md.get("name")
    pattern = DNS1123_LABEL if res.kind in LABEL_NAMED else DNS1123_SUBDOMAIN
    if not name and not md.get("generateName"):
        causes.append(_cause("FieldValueRequired", "metadata.name", "name or generateName is required"))
    elif name and not pattern.match(name):
        causes.append(_cause("FieldValueInvalid", "metadata.name",
                             f'Invalid value: "{name}": a lowercase RFC 1123 '
                             f"{'label' if pattern is DNS1123_LABEL else 'subdomain'} must consist of lower case "
                             "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"))
    causes += _labels("metadata.labels", md.get("labels"))
    spec = obj.get("spec") or {}
    if res.kind in ("Deployment", "ReplicaSet"):
        if spec.get("replicas", 1) < 0:
            causes.append(_cause("FieldValueInvalid", "spec.replicas",
                                 f"Invalid value: {spec['replicas']}: must be greater than or equal to 0"))
        selector = spec.get("selector")
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector:
            causes.append(_cause("FieldValueRequired", "spec.selector", "Required value"))
        else:
            from deploy_pipelines_tests.k8s_testbed.store import matches, selector_of

            if not matches(template_labels, selector_of(selector)):
                causes.append(_cause("FieldValueInvalid", "spec.template.metadata.labels",
                                     f"Invalid value: {json.dumps(template_labels)}: `selector` does not match "
                                     "template `labels`"))
        causes += _pod_spec("spec.template.spec", (spec.get("template") or {}).get("spec") or {})
    elif res.kind == "Job":
        causes += _pod_spec("spec.template.spec", (spec.get("template") or {}).get("spec") or {})
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            causes.append(_cause("FieldValueNotSupported", "spec.template.spec.restartPolicy",
                                 f'Unsupported value: "{policy or "Always"}": supported values: "OnFailure", "Never"'))
    elif res.kind == "Pod":
        causes += _pod_spec("spec", spec)
    elif res.kind == "Service":
        for i, p in enumerate(spec.get("ports") or []):
            if not 1 <= int(p.get("port", 0)) <= 65535:
                causes.append(_cause("FieldValueInvalid", f"spec.ports[{i}].port",
                                     f"Invalid value: {p.get('port')}: must be between 1 and 65535, inclusive"))
    return causes


def _labels(field: str, labels: dict | None) -> list[dict]:
    return [_cause("FieldValueInvalid", f"{field}", f'Invalid value: "{v}": a valid label must be an empty string '
                   "or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                   "alphanumeric character")
            for v in (labels or {}).values() if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v)]


def _pod_spec(field: str, spec: dict) -> list[dict]:
    causes = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(_cause("FieldValueRequired", f"{field}.containers", "Required value"))
    seen = set()
    for i, c in enumerate(containers):
        at = f"{field}.containers[{i}]"
        if not c.get("image"):
            causes.append(_cause("FieldValueRequired", f"{at}.image", "Required value"))
        if c.get("name") and not DNS1123_LABEL.match(c["name"]):
            causes.append(_cause("FieldValueInvalid", f"{at}.name", f'Invalid value: "{c["name"]}": a lowercase '
                                 "RFC 1123 label must consist of lower case alphanumeric characters or '-'"))
        if c.get("name") in seen:
            causes.append(_cause("FieldValueDuplicate", f"{at}.name", f'Duplicate value: "{c["name"]}"'))
        seen.add(c.get("name"))
        for j, p in enumerate(c.get("ports") or []):
            if not 1 <= int(p.get("containerPort", 0)) <= 65535:
                causes.append(_cause("FieldValueInvalid", f"{at}.ports[{j}].containerPort",
                                     f"Invalid value: {p.get('containerPort')}: must be between 1 and 65535, inclusive"))
    return causes
