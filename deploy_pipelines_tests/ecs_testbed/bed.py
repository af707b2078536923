"""The ECS test bed: an in-process moto server (ThreadedMotoServer on a free loopback port) for the
AWS APIs, with the scheduler moto lacks (scheduler.py), the ALB served by nginx (alb.py), and
checks of what real ECS / elbv2 reject (validation.py) installed on moto's own backends. It runs
in the test process because the scheduler records progress on moto's service objects; the
separate moto server of fixtures_aws stays what the other AWS tests use."""

from __future__ import annotations

import inspect
import secrets
import threading
from pathlib import Path

import boto3
import docker
import httpx

from deploy_pipelines.stack.moto import DUMMY_CREDENTIALS
from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.ecs_testbed import validation
from deploy_pipelines_tests.ecs_testbed.alb import AlbProxy
from deploy_pipelines_tests.ecs_testbed.scheduler import LABEL, Scheduler

ACCOUNT = "123456789012"


def _wrap(obj, name: str, before=None, after=None, lock=None) -> None:
    """Run before(args) and after(args, result) around obj.name, with the call's arguments by name
    (under `lock` when given: the scheduler must not see a half-made change)."""
    original = getattr(obj, name)
    sig = inspect.signature(original)

    def hooked(*args, **kwargs):
        if lock is None:
            return call(*args, **kwargs)
        with lock:
            return call(*args, **kwargs)

    def call(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        if before:
            before(bound.arguments)
        result = original(*args, **kwargs)
        if after:
            after(bound.arguments, result)
        return result

    setattr(obj, name, hooked)


class EcsTestBed:
    def __init__(self, docker_host: str, nginx_prefix: Path, region: str = "us-east-1",
                 task_start_timeout: float = 30.0):
        self.region, self.account = region, ACCOUNT
        self.id = secrets.token_hex(3)
        self.task_start_timeout = task_start_timeout
        self.lock = threading.RLock()
        self.port = free_port()
        self.docker = docker.DockerClient(base_url=docker_host, timeout=120)
        self.nginx_prefix = Path(nginx_prefix)
        self.scheduler = Scheduler(self)
        self.alb = AlbProxy(self.nginx_prefix, self.id, self._listeners, self.scheduler.targets)
        self._server = None
        self._clients: dict = {}

    # ------------------------------------------------------------------ life
    def __enter__(self) -> "EcsTestBed":
        from moto.ecs.models import ecs_backends
        from moto.elbv2.models import elbv2_backends
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        # moto's backends are process-wide: a bed starts from empty ones (a reset replaces the
        # backend objects, so no earlier bed's hooks or services remain).
        httpx.post(f"{self.url}/moto-api/reset", timeout=30).raise_for_status()
        self.ecs = ecs_backends[ACCOUNT][self.region]
        self.elbv2 = elbv2_backends[ACCOUNT][self.region]
        self._install_hooks()
        self.scheduler.start()
        return self

    def __exit__(self, *exc) -> None:
        self.scheduler.stop()
        self.alb.stop()
        for c in self.docker.containers.list(all=True, filters={"label": f"{LABEL}={self.id}"}):
            c.remove(force=True)
        if self._server is not None:
            httpx.post(f"{self.url}/moto-api/reset", timeout=30)
            self._server.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL": self.url}

    def client(self, name: str):
        """A boto3 client of this bed (cached: loading a service model, EC2's above all, takes seconds)."""
        if name not in self._clients:
            self._clients[name] = boto3.client(
                name, region_name=self.region, endpoint_url=self.url, aws_access_key_id="testing",
                aws_secret_access_key="testing", aws_session_token="testing")
        return self._clients[name]

    def errors(self) -> list[str]:
        return list(self.scheduler.errors)

    def containers(self, service: str | None = None) -> list:
        """The Podman containers of running tasks (of one ECS service)."""
        labels = [f"{LABEL}={self.id}"] + ([f"ecs.service={service}"] if service else [])
        return self.docker.containers.list(filters={"label": labels})

    # ------------------------------------------------------------------ hooks on moto's backends
    def _install_hooks(self) -> None:
        ecs, elbv2 = self.ecs, self.elbv2

        def check_td(a):
            validation.task_definition(a["family"], a["container_definitions"], a.get("network_mode"),
                                       a.get("requires_compatibilities"), a.get("cpu"), a.get("memory"), a.get("tags"))

        def check_create(a):
            td = ecs.describe_task_definition(a["task_definition_str"]) if a.get("task_definition_str") else None
            validation.load_balancers(a.get("load_balancers"), td)
            validation.tags(a.get("tags"))

        def created(a, svc):
            svc.deployments = []
            if svc.task_definition:
                svc.task_definition = ecs.describe_task_definition(svc.task_definition).arn
                self.scheduler.new_deployment(svc, "service created")

        def check_update(a):
            props = a["service_properties"]
            self._update_before = None
            if props.get("task_definition"):
                td = ecs.describe_task_definition(props["task_definition"])   # unknown: ClientException
                props["task_definition"] = td.arn
                svc = ecs._get_service(props.get("cluster", "default"), props["service"])  # noqa: SLF001
                validation.load_balancers(props.get("load_balancers") or svc.load_balancers, td)
            validation.deployment_configuration(props.get("deployment_configuration"))
            if props.get("desired_count") is not None and props["desired_count"] < 0:
                raise validation.InvalidParameterException("desiredCount must be 0 or more.")
            svc = ecs._get_service(props.get("cluster", "default"), props["service"])  # noqa: SLF001
            self._update_before = (svc.task_definition, svc.desired_count, props.get("force_new_deployment"))

        def updated(a, svc):
            before_td, before_count, force = self._update_before
            if svc.task_definition != before_td or force or not svc.deployments:
                self.scheduler.new_deployment(svc, "task definition changed" if svc.task_definition != before_td
                                              else "forced new deployment")
            elif svc.desired_count != before_count:
                svc.deployments[0]["desiredCount"] = svc.desired_count
                self.scheduler.event(svc, f"(service {svc.name}) desired count now {svc.desired_count}.")

        def check_actions(a):
            validation.forward_actions(a.get("actions"), set(elbv2.target_groups))

        _wrap(ecs, "register_task_definition", before=check_td)
        _wrap(ecs, "create_service", before=check_create, after=created, lock=self.lock)
        _wrap(ecs, "update_service", before=check_update, after=updated, lock=self.lock)
        _wrap(ecs, "tag_resource", before=lambda a: validation.tags(
            [{"key": k, "value": v} for k, v in a["tags"].items()]))
        _wrap(elbv2, "create_listener", before=check_actions, after=lambda a, r: self.alb.sync())
        _wrap(elbv2, "modify_listener", before=check_actions, after=lambda a, r: self.alb.sync())
        _wrap(elbv2, "modify_rule", before=check_actions)

    # ------------------------------------------------------------------ what the scheduler and ALB read
    def _listeners(self) -> list[tuple[int, list[tuple[str, int]]]]:
        out = []
        for lb in list(self.elbv2.load_balancers.values()):
            for listener in list(lb.listeners.values()):
                action = listener.default_actions[0].data if listener.default_actions else {}
                if action.get("Type") != "forward":
                    continue
                groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
                groups = [(g["TargetGroupArn"], int(g.get("Weight", 1))) for g in groups] if groups else \
                    [(action["TargetGroupArn"], 1)]
                out.append((int(listener.port), groups))
        return out

    def health_path(self, target_groups: list[str]) -> str:
        for arn in target_groups:
            tg = self.elbv2.target_groups.get(arn)
            if tg is not None and getattr(tg, "health_check_path", None):
                return tg.health_check_path
        return "/"

    def resolve_secret(self, value_from: str) -> str:
        if ":ssm:" in value_from:
            name = value_from.split(":parameter", 1)[1]
            return self.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        return self.client("secretsmanager").get_secret_value(SecretId=value_from)["SecretString"]

    # ------------------------------------------------------------------ what Terraform would create
    def provision(self, name: str, ports: dict[str, int], container_port: int = 8080,
                  health_path: str = "/health") -> dict:
        """A cluster, a VPC with a subnet and a security group, an ALB whose listeners (`ports`:
        public / test / stable -> loopback port) forward to target group A, and target groups A and B."""
        ec2, ecs, elb = self.client("ec2"), self.client("ecs"), self.client("elbv2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24",
                                     AvailabilityZone=f"{self.region}{z}")["Subnet"]["SubnetId"]
                   for i, z in ((1, "a"), (2, "b"))]
        sg = ec2.create_security_group(GroupName=f"{name}-sg", Description=name, VpcId=vpc)["GroupId"]
        ecs.create_cluster(clusterName=f"{name}-cluster")
        lb = elb.create_load_balancer(Name=f"{name}-alb", Subnets=subnets, SecurityGroups=[sg],
                                      Scheme="internet-facing", Type="application")["LoadBalancers"][0]
        tgs = [elb.create_target_group(Name=f"{name}-{slot}", Protocol="HTTP", Port=container_port, VpcId=vpc,
                                       TargetType="ip", HealthCheckPath=health_path)["TargetGroups"][0]
               for slot in ("a", "b")]
        for role, port in ports.items():
            elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                                    {"TargetGroupArn": tgs[0]["TargetGroupArn"], "Weight": 1}]}}])
        return {"cluster": f"{name}-cluster", "subnets": subnets, "security_groups": [sg],
                "load_balancer": lb["LoadBalancerName"], "target_groups": [t["TargetGroupName"] for t in tgs],
                "ports": ports}

    def put_secret(self, name: str, value: str) -> str:
        return self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]

    def get(self, port: int, path: str = "/") -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Connection": "close"}, timeout=5)
