"""The ECS side of the platform contract tests: the test bed (moto + scheduler + ALB on nginx, see
ecs_testbed/) for a module, and per test a fresh target provisioned as Terraform would (cluster,
VPC, ALB with public / test / stable listeners on loopback ports, two target groups, a Secrets
Manager secret holding the planted value) with an EcsPlatform bound to it."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from deploy_pipelines.adapters.ecs_platform import SLOTS, EcsPlatform
from deploy_pipelines.stack.moto import DUMMY_CREDENTIALS
from deploy_pipelines.stack.process import free_port


@pytest.fixture(scope="module")
def ecs_testbed(local_stack):
    from deploy_pipelines_tests.ecs_testbed import EcsTestBed

    _stack, env = local_stack
    with EcsTestBed(env["DEPLOY_DOCKER_HOST"], Path(env["DEPLOY_NGINX_PREFIX"])) as bed:
        yield bed
        assert bed.errors() == []


def ecs_platform(request, planted: str) -> EcsPlatform:
    bed = request.getfixturevalue("ecs_testbed")
    monkeypatch = request.getfixturevalue("monkeypatch")
    for name, value in DUMMY_CREDENTIALS.items():     # dummy keys: the platform talks to the test bed only
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = f"c{secrets.token_hex(3)}"
    ports = {"public": free_port(), "test": free_port(), "stable": free_port()}
    infra = bed.provision(name, ports, health_path="/ready")
    arn = bed.put_secret(f"{name}/api-token", planted)
    p = EcsPlatform(service=name, environment="contract", public_port=ports["public"], region=bed.region,
                    endpoint_url=bed.url, cluster=infra["cluster"], subnets=infra["subnets"],
                    security_groups=infra["security_groups"], load_balancer=infra["load_balancer"],
                    target_groups=infra["target_groups"], test_port=ports["test"], stable_port=ports["stable"],
                    public_host="127.0.0.1", secrets={"API_TOKEN": arn}, poll_interval=0.2,
                    execution_role_arn=f"arn:aws:iam::{bed.account}:role/{name}-execution")
    services = [p.slot_service(s) for s in SLOTS]

    def containers():
        return [c for s in services for c in bed.containers(s)]

    def inspect() -> list[str]:
        """Everything the ECS API shows about the target: every revision of the task family (with
        tags), the services (with tags and events)."""
        ecs = bed.client("ecs")
        seen = []
        for td in ecs.list_task_definitions(familyPrefix=p.family or p.base)["taskDefinitionArns"]:
            seen.append(json.dumps(ecs.describe_task_definition(taskDefinition=td, include=["TAGS"]), default=str))
        seen.append(json.dumps(ecs.describe_services(cluster=p.cluster, services=services, include=["TAGS"]),
                               default=str))
        return seen

    def teardown():
        ecs = bed.client("ecs")
        for s in ecs.describe_services(cluster=p.cluster, services=services)["services"]:
            ecs.update_service(cluster=p.cluster, service=s["serviceName"], desiredCount=0)

    request.addfinalizer(teardown)
    p._test_containers = containers  # noqa: SLF001 - what the shared tests inspect
    p._test_inspect = inspect        # noqa: SLF001
    return p
