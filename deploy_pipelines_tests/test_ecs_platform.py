"""What the ECS platform adds to the shared contract (test_platform_contract.py runs the contract
itself against the ECS test bed): a release whose tasks never become healthy trips the deployment
circuit breaker, the deploy reports it (FAILED, with ECS's reason) and narrates the rollout, the
new slot goes back to 0 tasks and users keep getting the stable version; every registered task
definition revision carries the release tags and no secret value. Not covered: Dagster ops around
it, CloudWatch analysis."""

from __future__ import annotations

import json

import pytest

from deploy_pipelines.adapters.platform import PlatformError
from deploy_pipelines.adapters.records import Probe
from deploy_pipelines.catalog.models import Canary, CanaryStep, Rolling
from deploy_pipelines_tests.contract_ecs import ecs_platform, ecs_testbed  # noqa: F401 - fixture
from deploy_pipelines_tests.contract_scenarios import PLANTED, answers, workload

pytestmark = [pytest.mark.slow, pytest.mark.ecs, pytest.mark.timeout(900)]


@pytest.fixture
def platform(request, local_stack):  # noqa: F811
    import os

    os.environ["CONTRACT_PLANTED"] = PLANTED
    return ecs_platform(request, PLANTED)


def test_a_task_that_never_becomes_healthy_trips_the_circuit_breaker(platform, images, ecs_testbed):  # noqa: F811
    said: list[str] = []
    platform.deploy(workload(images, "v1.0.0"), Rolling(), said.append)
    platform.promote(said.append)
    ecs_testbed.task_start_timeout = 3.0       # how long a task may fail its target group's health check
    try:
        broken = workload(images, "v1.1.0").model_copy(update={"readiness": Probe(path="/never", timeout=5)})
        with pytest.raises(PlatformError, match="FAILED: ECS deployment circuit breaker") as exc:
            platform.deploy(broken, Canary(steps=[CanaryStep(setWeight=5)]), said.append)
    finally:
        ecs_testbed.task_start_timeout = 30.0
    assert "service" in str(exc.value) and platform.service in str(exc.value)
    assert any("IN_PROGRESS" in line for line in said) and any("failed tasks 3" in line for line in said), said
    st = platform.status()
    assert st.stable.version == "v1.0.0" and st.new is None and st.instances == {"v1.0.0": 1}
    assert answers(platform.public_url(), 20) == {"v1.0.0": 20}

    tds = json.loads(json.dumps(platform._test_inspect()[:-1]))  # noqa: SLF001 - every revision of the family
    assert len(tds) == 2 and not [t for t in tds if PLANTED in t]
    for text in tds:
        td = json.loads(text)
        tags = {t["key"]: t["value"] for t in td["tags"]}
        assert tags["deploy:version"] in ("v1.0.0", "v1.1.0") and tags["deploy:digest"].startswith("sha256:")
        assert td["taskDefinition"]["containerDefinitions"][0]["secrets"][0]["valueFrom"].startswith(
            "arn:aws:secretsmanager:")
