"""The platform contract (contract_scenarios.py) on the Kubernetes platform, against the test bed
(deploy_pipelines_tests/k8s_testbed: the official client through a kubeconfig, pods as Podman
containers, Services through nginx). Not covered here: Dagster around it (test_k8s_e2e.py)."""

from __future__ import annotations

import json

import pytest

from deploy_pipelines_tests import contract_k8s
from deploy_pipelines_tests.contract_k8s import k8s_cluster  # noqa: F401 - fixture
from deploy_pipelines_tests.contract_scenarios import *  # noqa: F401,F403 - the scenarios
from deploy_pipelines_tests.contract_scenarios import PLANTED, Hooks, attach

pytestmark = [pytest.mark.slow, pytest.mark.k8s, pytest.mark.timeout(1200)]


@pytest.fixture
def platform(k8s_cluster):  # noqa: F811
    p = contract_k8s.k8s_platform(k8s_cluster, PLANTED)
    p._test_cluster = k8s_cluster  # noqa: SLF001
    yield attach(p, Hooks(
        instance_envs=lambda: contract_k8s.instance_envs(p),
        visible=lambda: contract_k8s.everything_visible(p) + [json.dumps(p._state())],  # noqa: SLF001
        environ=lambda: contract_k8s.environ_of_an_instance(k8s_cluster, p)))
    contract_k8s.remove_target(p)
