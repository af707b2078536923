"""The platform contract (contract_scenarios.py) on the Docker platform through ssh:// to a loopback
sshd (paramiko, `docker system dial-stdio` on the far side): the way two of the five systems deploy
to a Linux server behind nginx from elsewhere."""

from __future__ import annotations

import pytest

from deploy_pipelines_tests.contract_docker import docker_platform
from deploy_pipelines_tests.contract_scenarios import *  # noqa: F401,F403 - the scenarios
from deploy_pipelines_tests.fixtures_ssh import ssh_docker_host  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1200)]


@pytest.fixture
def platform(local_stack, ssh_docker_host):  # noqa: F811
    _stack, env = local_stack
    yield from docker_platform(env, ssh_docker_host)
