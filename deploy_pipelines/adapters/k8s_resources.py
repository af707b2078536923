"""The Kubernetes platform of one catalog target (kept apart so resources.py only wires it)."""

from __future__ import annotations

from dagster import EnvVar

from deploy_pipelines.adapters.catalog_settings import int_setting
from deploy_pipelines.adapters.k8s_platform import KubernetesPlatform


def kubernetes_platform_for(service: str, environment: str, conn, target) -> KubernetesPlatform:
    k = target.kubernetes
    return KubernetesPlatform(
        service=service, environment=environment,
        public_port=int_setting(target.port),
        namespace=conn.namespace, context=conn.context or "", in_cluster=conn.in_cluster,
        kubeconfig=EnvVar(conn.kubeconfig.env) if conn.kubeconfig else "",
        deployment=k.deployment or "", service_name=k.service or "", service_type=k.service_type,
        image_pull_secret=k.image_pull_secret or "", progress_deadline=k.progress_deadline, drain=k.drain,
        replicas=target.replicas)
