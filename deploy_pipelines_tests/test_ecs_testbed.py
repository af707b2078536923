"""The ECS test bed itself (ecs_testbed/), through boto3 as any client sees it: what real ECS and
elbv2 reject is rejected (Fargate size, secret values instead of ARNs, oversized tags, an unknown
task definition, a load balancer naming an unmapped port, listener weights out of range or all
zero); a service's deployment runs its tasks for real (Podman) and goes IN_PROGRESS -> COMPLETED
with the ALB (nginx) answering; a task definition whose container exits trips the circuit breaker
(FAILED after 3 failed tasks) while the old tasks keep serving. Not covered: the EcsPlatform
adapter (test_platform_contract.py, `ecs` parameter)."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.contract_ecs import ecs_testbed  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.ecs, pytest.mark.timeout(600)]


def taskdef(bed, image: str, command: list[str], **over) -> dict:
    kw = {"family": "bed", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256",
          "memory": "512", "containerDefinitions": [{"name": "app", "image": image, "command": command,
                                                     "portMappings": [{"containerPort": 8080}]}]}
    kw.update(over)
    return kw


SERVE = ["sh", "-c", "exec python3 -m http.server $PORT --bind $BIND"]


@pytest.fixture
def infra(ecs_testbed):  # noqa: F811
    import secrets

    ports = {"public": free_port()}
    return ecs_testbed.provision(f"b{secrets.token_hex(3)}", ports, health_path="/")


def error_code(call) -> str:
    with pytest.raises(ClientError) as exc:
        call()
    return exc.value.response["Error"]["Code"]


def test_the_test_bed_rejects_what_ecs_and_elbv2_reject(ecs_testbed, local_stack, infra):  # noqa: F811
    bed, image = ecs_testbed, local_stack[1]["DEPLOY_BASE_IMAGE"]
    ecs, elb = bed.client("ecs"), bed.client("elbv2")
    assert error_code(lambda: ecs.register_task_definition(**taskdef(bed, image, SERVE, memory="300"))) \
        == "InvalidParameterException"
    bad_secret = taskdef(bed, image, SERVE)
    bad_secret["containerDefinitions"][0]["secrets"] = [{"name": "TOKEN", "valueFrom": "hunter2"}]
    assert error_code(lambda: ecs.register_task_definition(**bad_secret)) == "InvalidParameterException"
    assert error_code(lambda: ecs.register_task_definition(
        **taskdef(bed, image, SERVE, tags=[{"key": "k", "value": "x" * 257}]))) == "InvalidParameterException"
    td = ecs.register_task_definition(**taskdef(bed, image, SERVE))["taskDefinition"]["taskDefinitionArn"]
    tg = elb.describe_target_groups(Names=[infra["target_groups"][0]])["TargetGroups"][0]["TargetGroupArn"]
    net = {"awsvpcConfiguration": {"subnets": infra["subnets"], "securityGroups": infra["security_groups"]}}
    assert error_code(lambda: ecs.create_service(
        cluster=infra["cluster"], serviceName="wrong-port", taskDefinition=td, desiredCount=0, launchType="FARGATE",
        networkConfiguration=net, loadBalancers=[{"targetGroupArn": tg, "containerName": "app",
                                                  "containerPort": 9999}])) == "InvalidParameterException"
    ecs.create_service(cluster=infra["cluster"], serviceName="ok", taskDefinition=td, desiredCount=0,
                       launchType="FARGATE", networkConfiguration=net)
    assert error_code(lambda: ecs.update_service(cluster=infra["cluster"], service="ok",
                                                 taskDefinition="nope:7")) == "ClientException"
    listener = elb.describe_listeners(LoadBalancerArn=elb.describe_load_balancers(
        Names=[infra["load_balancer"]])["LoadBalancers"][0]["LoadBalancerArn"])["Listeners"][0]["ListenerArn"]
    tgs = [elb.describe_target_groups(Names=[n])["TargetGroups"][0]["TargetGroupArn"] for n in infra["target_groups"]]
    for weights in ((0, 0), (1000, 1)):
        action = {"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": a, "Weight": w} for a, w in zip(tgs, weights)]}}
        assert error_code(lambda: elb.modify_listener(ListenerArn=listener, DefaultActions=[action])) \
            == "ValidationError"


def wait_rollout(ecs, cluster: str, service: str, states: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        svc = ecs.describe_services(cluster=cluster, services=[service])["services"][0]
        if svc["deployments"][0]["rolloutState"] in states and (
                svc["deployments"][0]["rolloutState"] != "COMPLETED" or len(svc["deployments"]) == 1):
            return svc
        time.sleep(0.3)
    raise AssertionError(f"{service}: rollout not in {states} after {timeout}s: {svc['deployments']}")


def test_deployments_run_tasks_complete_and_trip_the_circuit_breaker(ecs_testbed, local_stack, infra):  # noqa: F811
    bed, image = ecs_testbed, local_stack[1]["DEPLOY_BASE_IMAGE"]
    ecs, elb, cluster = bed.client("ecs"), bed.client("elbv2"), infra["cluster"]
    good = ecs.register_task_definition(**taskdef(bed, image, SERVE))["taskDefinition"]["taskDefinitionArn"]
    bad = ecs.register_task_definition(**taskdef(bed, image, ["sh", "-c", "exit 3"]))["taskDefinition"][
        "taskDefinitionArn"]
    tg = elb.describe_target_groups(Names=[infra["target_groups"][0]])["TargetGroups"][0]["TargetGroupArn"]
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=good, desiredCount=2, launchType="FARGATE",
                       networkConfiguration={"awsvpcConfiguration": {"subnets": infra["subnets"],
                                                                 "securityGroups": infra["security_groups"]}},
                       loadBalancers=[{"targetGroupArn": tg, "containerName": "app", "containerPort": 8080}])
    assert ecs.describe_services(cluster=cluster, services=["web"])["services"][0]["deployments"][0][
        "rolloutState"] == "IN_PROGRESS"
    svc = wait_rollout(ecs, cluster, "web", {"COMPLETED"})
    assert svc["deployments"][0]["runningCount"] == 2 and len(bed.containers("web")) == 2
    public = infra["ports"]["public"]
    assert [bed.get(public).status_code for _ in range(10)] == [200] * 10

    ecs.update_service(cluster=cluster, service="web", taskDefinition=bad, deploymentConfiguration={
        "maximumPercent": 200, "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": True, "rollback": False}})
    svc = wait_rollout(ecs, cluster, "web", {"FAILED"})
    primary, active = svc["deployments"][0], svc["deployments"][1]
    assert primary["status"] == "PRIMARY" and primary["failedTasks"] >= 3 and "circuit breaker" in \
        primary["rolloutStateReason"]
    assert active["status"] == "ACTIVE" and active["taskDefinition"] == good and active["runningCount"] == 2
    assert [bed.get(public).status_code for _ in range(10)] == [200] * 10     # the old tasks still serve
    ecs.update_service(cluster=cluster, service="web", desiredCount=0)
