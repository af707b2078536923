"""The ECS catalog fields (catalog/aws.py) and task definitions as data (adapters/ecs_taskdef.py),
without any server: a valid ecs target loads and builds an EcsPlatform through resources_for; a
missing aws/ecs block, a secret written as a value, a `{env: NAME}` setting without a valueFrom ARN
and a non-Fargate size are rejected with the field's path; the task definition of a workload holds
secrets by ARN only and its tags give the workload back. Not covered: the platform against the
test bed (test_platform_contract.py, the `ecs` parameter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy_pipelines.adapters import ecs_taskdef
from deploy_pipelines.adapters.ecs_platform import EcsPlatform
from deploy_pipelines.adapters.records import SecretEnv, Workload
from deploy_pipelines.catalog import CatalogError, parse_catalog
from deploy_pipelines.resources import resources_for

pytestmark = pytest.mark.ecs
ARN = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:morrow/api-token-AbCdEf"

CATALOG = """\
project: morrow
environments:
  staging:
    aws: {region: ap-northeast-1, endpoint_url: {env: AWS_ENDPOINT_URL}}
    ecs: {cluster: morrow-staging, load_balancer: morrow-staging-alb}
    registry: 123456789012.dkr.ecr.ap-northeast-1.amazonaws.com
    prometheus: "http://127.0.0.1:9090"
services:
  api:
    repo: /srv/git/api.git
    image: {repository: morrow/api}
    targets:
      staging:
        platform: ecs
        port: 80
        replicas: 2
        env: {LOG_LEVEL: info, API_TOKEN: {env: API_TOKEN}}
        ecs:
          cpu: "512"
          memory: "1024"
          subnets: [subnet-1, subnet-2]
          security_groups: [sg-1]
          target_groups: [morrow-api-blue, morrow-api-green]
          test_port: 8443
          secrets: {API_TOKEN: "%s"}
""" % ARN


def parse(text: str):
    return parse_catalog(text, Path("deploy.yaml"))


def problems(text: str) -> list[str]:
    with pytest.raises(CatalogError) as exc:
        parse(text)
    return exc.value.problems


def test_a_valid_ecs_target_builds_the_ecs_platform():
    catalog = parse(CATALOG)
    platform = resources_for(catalog, "deploy.yaml", "api", "staging")["platform"]
    assert isinstance(platform, EcsPlatform)
    assert (platform.cluster, platform.load_balancer, platform.region) == ("morrow-staging", "morrow-staging-alb",
                                                                           "ap-northeast-1")
    assert platform.target_groups == ["morrow-api-blue", "morrow-api-green"] and platform.secrets == {"API_TOKEN": ARN}


@pytest.mark.parametrize("edit, expected", [
    (("    aws: {region: ap-northeast-1, endpoint_url: {env: AWS_ENDPOINT_URL}}\n", ""),
     "environments.staging.aws: platform ecs needs aws"),
    (('secrets: {API_TOKEN: "%s"}' % ARN, "secrets: {API_TOKEN: hunter2}"),
     "services.api.targets.staging.ecs.secrets: secrets API_TOKEN: a valueFrom ARN"),
    (('secrets: {API_TOKEN: "%s"}' % ARN, "secrets: {}"),
     "services.api.targets.staging.env.API_TOKEN: on ECS a secret is a valueFrom ARN"),
    (('memory: "1024"', 'memory: "300"'), "is not a Fargate task size"),
    (("target_groups: [morrow-api-blue, morrow-api-green]", "target_groups: [morrow-api-blue]"),
     "services.api.targets.staging.ecs.target_groups"),
])
def test_bad_ecs_fields_are_rejected_with_their_path(edit, expected):
    found = problems(CATALOG.replace(*edit))
    assert any(expected in p for p in found), found
    assert all("[service api, environment staging]" in p or "[environment staging]" in p for p in found), found


def test_task_definition_holds_secret_references_and_the_workload_comes_back_from_tags():
    planted = "planted-do-not-leak"
    workload = Workload(version="v1.2.0", image="123.dkr.ecr/morrow/api@sha256:" + "a" * 64, digest="sha256:" + "a" * 64,
                        commit="c0ffee", run_id="run-1", env={"GREETING": "hi " * 60},
                        secret_env=(SecretEnv(name="API_TOKEN", env="API_TOKEN"),))
    td = ecs_taskdef.task_definition(
        workload, family="morrow-api", container="app", cpu="256", memory="512", region="ap-northeast-1",
        log_group="/ecs/morrow-api", execution_role_arn="", task_role_arn="",
        secrets=ecs_taskdef.secret_refs(workload, {"API_TOKEN": ARN}, "service api, environment staging"),
        tags=ecs_taskdef.workload_tags(workload))
    text = json.dumps(td)
    assert planted not in text and td["containerDefinitions"][0]["secrets"] == [{"name": "API_TOKEN", "valueFrom": ARN}]
    assert all(len(t["value"]) <= 256 for t in td["tags"]) and len(td["tags"]) <= 50
    back = ecs_taskdef.record_from_tags("arn:td/morrow-api:3", workload.image, td["tags"])
    assert back["workload"] == workload and (back["version"], back["run_id"]) == ("v1.2.0", "run-1")
    with pytest.raises(Exception, match="secret API_TOKEN has no valueFrom ARN"):
        ecs_taskdef.secret_refs(workload, {}, "service api, environment staging")


def test_morrows_catalog_loads_with_ecs_cloudwatch_and_its_canary():
    from deploy_pipelines.adapters.cloudwatch import CloudWatchMetrics
    from deploy_pipelines.catalog import load_catalog

    path = Path(__file__).resolve().parents[1] / "examples" / "morrow" / "deploy.yaml"
    catalog = load_catalog(path)
    production = catalog.services["api"].targets["production"]
    assert [s.weight for s in production.strategy.steps] == [5, 50, 100]
    assert catalog.services["api"].database.backup.kind == "rds_snapshot"
    resources = resources_for(catalog, str(path), "api", "production")
    assert isinstance(resources["platform"], EcsPlatform) and isinstance(resources["metrics"], CloudWatchMetrics)
    assert resources["platform"].ecs_service == "morrow-api-production"
