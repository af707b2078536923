"""The platform contract (contract_scenarios.py) on the Docker platform, for real: the stack's
Podman service through a local socket (test_platform_contract_ssh.py: the same through ssh:// to a
loopback sshd). Kubernetes and ECS run the same scenarios in test_platform_contract_k8s.py and
test_platform_contract_ecs.py."""

from __future__ import annotations

import pytest

from deploy_pipelines_tests.contract_docker import docker_platform
from deploy_pipelines_tests.contract_scenarios import *  # noqa: F401,F403 - the scenarios

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1200)]


@pytest.fixture
def platform(local_stack):  # noqa: F811
    _stack, env = local_stack
    yield from docker_platform(env, env["DEPLOY_DOCKER_HOST"])
