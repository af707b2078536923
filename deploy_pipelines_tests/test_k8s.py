"""k8s/: values.yaml merged over the official chart's values validates against the chart's own
schema (offline: the schema's remote Kubernetes $refs resolve to the v1.33 OpenAPI spec in
shared/fixtures), sets what the design needs, and rbac.yaml's objects validate against the spec.
Not covered: a real `helm install` (no cluster here)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEPLOY_SHARED_DIR", REPO.parent / "shared"))
CHART = SHARED / "fixtures" / "helm" / "dagster"
SWAGGER = SHARED / "fixtures" / "kubernetes" / "swagger.json"
K8S_SCHEMA_URI = "https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v1.19.0/_definitions.json"

@pytest.fixture(autouse=True)
def _shared_fixtures_present():
    """A missing ../shared is a broken checkout: fail, never skip silently."""
    if not CHART.exists():
        pytest.fail(f"shared fixtures not found at {SHARED}: the shared folder must sit beside the repo (or set DEPLOY_SHARED_DIR)")


def merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v) if k in base else v
        return out
    return copy.deepcopy(over)


@pytest.fixture(scope="module")
def swagger():
    return json.loads(SWAGGER.read_text())


@pytest.fixture(scope="module")
def values():
    return merge(yaml.safe_load((CHART / "values.yaml").read_text()), yaml.safe_load((REPO / "k8s/values.yaml").read_text()))


def k8s_definitions(swagger: dict) -> dict:
    """The spec's definitions as the yannh/kubernetes-json-schema files the chart references have
    them: openapi2jsonschema turns format int-or-string into string-or-integer."""
    defs = copy.deepcopy(swagger["definitions"])
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    return defs


def validator(schema: dict, swagger: dict):
    k8s = Resource.from_contents({"definitions": k8s_definitions(swagger)}, default_specification=DRAFT202012)
    registry = Registry().with_resource(K8S_SCHEMA_URI, k8s)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_values_validate_against_the_chart_schema(values, swagger):
    schema = json.loads((CHART / "values.schema.json").read_text())
    errors = sorted(validator(schema, swagger).iter_errors(values), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:10])


def test_a_broken_value_is_caught(values, swagger):
    schema = json.loads((CHART / "values.schema.json").read_text())
    broken = copy.deepcopy(values)
    broken["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"][0]["limit"] = "one"
    assert list(validator(schema, swagger).iter_errors(broken))


def test_values_carry_the_design(values):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    limits = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert {"key": "deploy/target", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "deploy_pipelines.definitions"]
    # The same limit as the embedded dagster.yaml.
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())["concurrency"]["runs"]["tag_concurrency_limits"]
    assert local[0]["key"] == "deploy/target" and local[0]["value"] == {"applyLimitPerUniqueValue": True}


def test_rbac_objects_validate_against_the_kubernetes_spec(swagger):
    kinds = {"ServiceAccount": "io.k8s.api.core.v1.ServiceAccount", "Role": "io.k8s.api.rbac.v1.Role",
             "RoleBinding": "io.k8s.api.rbac.v1.RoleBinding"}
    docs = [d for d in yaml.safe_load_all((REPO / "k8s/rbac.yaml").read_text()) if d]
    assert {d["kind"] for d in docs} == set(kinds)
    for doc in docs:
        schema = {"$ref": f"#/definitions/{kinds[doc['kind']]}", "definitions": k8s_definitions(swagger)}
        jsonschema.Draft4Validator(schema).validate(doc)
