"""The platform contract (contract_scenarios.py) on the ECS platform, against the test bed
(deploy_pipelines_tests/ecs_testbed: moto plus a scheduler that runs tasks as Podman containers and
serves the ALB's weighted target groups through nginx)."""

from __future__ import annotations

import pytest

from deploy_pipelines_tests.contract_ecs import ecs_platform, ecs_testbed  # noqa: F401 - fixture
from deploy_pipelines_tests.contract_scenarios import *  # noqa: F401,F403 - the scenarios
from deploy_pipelines_tests.contract_scenarios import PLANTED, Hooks, attach

pytestmark = [pytest.mark.slow, pytest.mark.ecs, pytest.mark.timeout(1200)]


def _env(container) -> dict:
    return dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])


@pytest.fixture
def platform(request):
    p = ecs_platform(request, PLANTED)
    yield attach(p, Hooks(
        instance_envs=lambda: [(_env(c)["APP_VERSION"], _env(c)) for c in p._test_containers()],  # noqa: SLF001
        visible=lambda: p._test_inspect(),  # noqa: SLF001
        environ=lambda: p._test_containers()[0].exec_run(["cat", "/proc/1/environ"],   # noqa: SLF001
                                                         user="65534").output.decode().split("\0")))
