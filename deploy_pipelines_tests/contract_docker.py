"""The Docker platform for the contract scenarios: a fresh target on a Docker host (local socket or
ssh://) with the inspection hooks the scenarios use."""

from __future__ import annotations

import json
import secrets

from deploy_pipelines.adapters.docker_platform import DockerNginxPlatform
from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.contract_scenarios import Hooks, attach


def _instances(p: DockerNginxPlatform) -> list:
    return p.client.containers.list(filters={"label": [f"deploy.service={p.service}", "deploy.role=instance"]})


def _hooks(p: DockerNginxPlatform) -> Hooks:
    def visible() -> list[str]:
        seen = [json.dumps(c.attrs) for c in              # config, env, labels, argv of every container
                p.client.containers.list(all=True, filters={"label": f"deploy.service={p.service}"})]
        return seen + [json.dumps(p._state())]            # noqa: SLF001 - the platform's own annotation

    return Hooks(
        instance_envs=lambda: [(c.labels["deploy.version"], dict(e.split("=", 1) for e in c.attrs["Config"]["Env"]))
                               for c in _instances(p)],
        visible=visible,
        environ=lambda: _instances(p)[0].exec_run(["cat", "/proc/1/environ"],      # as the app's own user
                                                  user="65534").output.decode().split("\0"))


def docker_platform(env: dict[str, str], host: str):
    """A fresh target (own service name, own public port) on that Docker host; removed after."""
    service = f"c{secrets.token_hex(3)}"
    p = DockerNginxPlatform(service=service, environment="contract", public_port=free_port(), docker_host=host,
                            nginx_image=env["DEPLOY_NGINX_IMAGE"],
                            prometheus_targets_dir=env["DEPLOY_PROMETHEUS_TARGETS"])
    yield attach(p, _hooks(p))
    for c in p.client.containers.list(all=True, filters={"label": f"deploy.service={service}"}):
        c.remove(force=True)
