"""The adapters one service x environment uses, built from the catalog. Anything machine-specific
or secret is a Dagster EnvVar: the run config and the UI show the variable's name, never its value."""

from __future__ import annotations

from dagster import EnvVar
from dagster_aws.s3 import S3Resource

from deploy_pipelines.adapters.backup_storage import BackupStorage, LocalBackupStorage
from deploy_pipelines.adapters.buildah import BuildahBuilder
from deploy_pipelines.adapters.catalog_settings import int_setting, setting
from deploy_pipelines.adapters.database import NoDatabase
from deploy_pipelines.adapters.cloudwatch import CloudWatchMetrics
from deploy_pipelines.adapters.docker_platform import DockerNginxPlatform
from deploy_pipelines.adapters.ecs_platform import EcsPlatform
from deploy_pipelines.adapters.git import LocalGit
from deploy_pipelines.adapters.k8s_resources import kubernetes_platform_for
from deploy_pipelines.adapters.metrics import PrometheusMetrics
from deploy_pipelines.adapters.mysql import MySQLDatabase
from deploy_pipelines.adapters.notifier import NullNotifier, SlackWebhook
from deploy_pipelines.adapters.postgres import PostgresDatabase
from deploy_pipelines.adapters.s3_backup_storage import BackupStorageAtUri, S3BackupStorage, parse_s3_uri
from deploy_pipelines.catalog.models import Catalog, EnvRef
from deploy_pipelines.steps.common import DeployTarget


def backup_storage_for(uri) -> BackupStorage:
    """s3://bucket/prefix -> S3 through dagster-aws's S3Resource (region, endpoint and credentials
    from the standard AWS environment: AWS_REGION, AWS_ENDPOINT_URL, role or profile); a path or
    file:// URL -> a local directory; {env: NAME} -> whichever the variable holds at run time."""
    if isinstance(uri, EnvRef):
        return BackupStorageAtUri(uri=EnvVar(uri.env), s3=S3Resource())
    if uri.startswith("s3://"):
        bucket, prefix = parse_s3_uri(uri)
        return S3BackupStorage(s3=S3Resource(), bucket=bucket, prefix=prefix)
    return LocalBackupStorage(root=uri)


def database_for(catalog: Catalog, service: str, environment: str):
    db = catalog.services[service].database
    if db is None:
        return NoDatabase()
    cls = PostgresDatabase if db.engine == "postgres" else MySQLDatabase
    url = catalog.services[service].targets[environment].database_url or db.url
    return cls(url=EnvVar(url.env))


def notifier_for(catalog: Catalog):
    slack = catalog.notify.slack
    if slack is None:
        return NullNotifier()
    return SlackWebhook(webhook_url=EnvVar(slack.webhook.env), info_channel=slack.info,
                        failure_channel=slack.failure)


def ecs_platform_for(catalog: Catalog, service: str, environment: str) -> EcsPlatform:
    """The ECS platform of one target: rules.ecs_problems made sure every part is there."""
    env, target = catalog.environments[environment], catalog.services[service].targets[environment]
    aws, cluster, t = env.aws, env.ecs, target.ecs
    optional = {k: setting(v) for k, v in {"endpoint_url": aws.endpoint_url, "profile": aws.profile,
                                          "public_host": cluster.public_host,
                                          "execution_role_arn": cluster.execution_role_arn,
                                          "ecs_service": t.service, "family": t.family, "log_group": t.log_group,
                                          "stable_port": int_setting(t.stable_port) if t.stable_port else None}.items()
                if v is not None}
    return EcsPlatform(
        service=service, environment=environment, public_port=int_setting(target.port), region=aws.region,
        cluster=setting(cluster.cluster), load_balancer=setting(t.load_balancer or cluster.load_balancer),
        container_name=t.container_name, cpu=t.cpu, memory=t.memory, subnets=t.subnets,
        security_groups=t.security_groups, target_groups=t.target_groups, test_port=int_setting(t.test_port),
        secrets=t.secrets, maximum_percent=t.maximum_percent, minimum_healthy_percent=t.minimum_healthy_percent,
        **optional)


def resources_for(catalog: Catalog, catalog_path: str, service: str, environment: str) -> dict:
    svc = catalog.services[service]
    env = catalog.environments[environment]
    target = svc.targets[environment]
    resources: dict = {
        "target": DeployTarget(catalog_path=catalog_path, service=service, environment=environment),
        "git": LocalGit(repo=setting(svc.repo)),
        "builder": BuildahBuilder(),
        "database": database_for(catalog, service, environment),
        "notifier": notifier_for(catalog),
        "metrics": PrometheusMetrics(url=setting(env.prometheus) if env.prometheus else "http://127.0.0.1:9"),
    }
    if env.aws is not None and svc.verify.rules and all(r.query.startswith("cloudwatch") for r in svc.verify.rules):
        # Rules written as CloudWatch metrics or alarms (Morrow's thresholds) read CloudWatch.
        resources["metrics"] = CloudWatchMetrics(region_name=env.aws.region, profile_name=env.aws.profile,
                                                 endpoint_url=setting(env.aws.endpoint_url) if env.aws.endpoint_url
                                                 else None)
    storage = (svc.database.backup.storage if svc.database else None) or env.backup_root
    resources["backup_storage"] = backup_storage_for(storage) if storage else LocalBackupStorage(root="/nonexistent")
    if target.platform == "docker":
        d = env.docker
        resources["platform"] = DockerNginxPlatform(
            service=service, environment=environment,
            public_port=int_setting(target.port),
            docker_host=setting(d.host), nginx_image=setting(d.nginx_image) if d.nginx_image else "",
            bind_host=d.bind_host, network=d.network, public_host=setting(d.public_host) if d.public_host else "",
            prometheus_targets_dir=setting(d.prometheus_targets) if d.prometheus_targets else None)
    elif target.platform == "kubernetes":
        resources["platform"] = kubernetes_platform_for(service, environment, env.kubernetes, target)
    elif target.platform == "ecs":
        resources["platform"] = ecs_platform_for(catalog, service, environment)
    else:
        raise NotImplementedError(f"platform {target.platform} (service {service}, environment {environment}) "
                                  "has no adapter yet")
    return resources
