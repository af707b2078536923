"""The Kubernetes parts of deploy.yaml: how an environment reaches its cluster, and how a target's
workload is named and shaped there. Wired into models.py as `Environment.kubernetes` and
`Target.kubernetes`.

    environments:
      production:
        kubernetes: {context: gke-prod, namespace: video-platform, kubeconfig: {env: KUBECONFIG_PROD}}
    services:
      api:
        targets:
          production:
            platform: kubernetes
            kubernetes:
              deployment: video-api          # the Deployment the rolling release patches
              service: video-api             # the Service users reach
              resources: {cpu: 250m, memory: 256Mi}
              image_pull_secret: gcr-pull
              secrets: {DATABASE_URL: {secret: video-db, key: url}}

Secrets are `secretKeyRef`s only: the catalog names a Secret and a key, never a value."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from deploy_pipelines.catalog.models import Duration, EnvRef, Strict

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"


class KubernetesConnection(Strict):
    """`kubeconfig: {env: NAME}` (the variable holds the kubeconfig's path) or `in_cluster: true`
    (the run pod's service account, as under the K8sRunLauncher)."""

    context: str | None = None
    namespace: str = Field("default", pattern=DNS_LABEL, max_length=63)
    kubeconfig: EnvRef | None = None
    in_cluster: bool = False

    @model_validator(mode="after")
    def _one_way_in(self):
        if self.in_cluster == (self.kubeconfig is not None):
            raise ValueError("write exactly one of kubeconfig: {env: NAME} (a kubeconfig path) or in_cluster: true")
        return self


class SecretKeyRef(Strict):
    secret: str = Field(pattern=DNS_SUBDOMAIN, max_length=253)
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)


class KubernetesWorkload(Strict):
    """Names and shape of one target's objects; names default to the service's (`_` as `-`)."""

    deployment: str | None = Field(None, pattern=DNS_LABEL, max_length=50)
    service: str | None = Field(None, pattern=DNS_LABEL, max_length=55)
    service_type: Literal["ClusterIP", "LoadBalancer", "NodePort"] = "ClusterIP"
    resources: dict[Literal["cpu", "memory"], str] = {}
    image_pull_secret: str | None = Field(None, pattern=DNS_SUBDOMAIN)
    secrets: dict[str, SecretKeyRef] = {}       # env var name -> Secret key
    progress_deadline: Duration = 600.0         # progressDeadlineSeconds of the Deployment
    drain: Duration = 2.0                       # preStop sleep: proxies drop a pod before it stops

    @model_validator(mode="after")
    def _quantities(self):
        for name, value in self.resources.items():
            if not re.match(QUANTITY, value):
                raise ValueError(f"resources.{name}: {value!r} is not a Kubernetes quantity (e.g. 250m, 512Mi)")
        return self


def kubernetes_problems(catalog) -> list[tuple[tuple, str]]:
    """Catalog rule: on Kubernetes a secret is a Secret key, never a value the pipeline passes on."""
    problems = []
    for s, svc in catalog.services.items():
        for e, t in svc.targets.items():
            if t.platform != "kubernetes":
                continue
            where = ("services", s, "targets", e)
            for name, value in t.env.items():
                if isinstance(value, EnvRef):
                    problems.append(((*where, "env", name), f"on Kubernetes a secret is a Secret reference: move "
                                     f"{name} to kubernetes.secrets.{name}: {{secret: NAME, key: KEY}}"))
            if svc.database and t.database_env and t.database_env not in t.kubernetes.secrets:
                problems.append(((*where, "kubernetes", "secrets"),
                                 f"the app receives the database URL as {t.database_env}: name its Secret in "
                                 f"kubernetes.secrets.{t.database_env}: {{secret: NAME, key: KEY}}"))
    return problems
