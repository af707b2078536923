"""Hooks and shared fixtures for the whole suite.

`local_stack` and the contract `images` are registered here once, so every module that does not
import them by name shares one stack and one set of images per session (per xdist worker): the
contract modules and the test-bed modules, whose targets have names of their own. The release
end-to-end modules deploy the demo's fixed names (`app` in `demo`, `staging`...) and import
`local_stack` themselves, which gives each of them a stack of its own.

The reliability ledger's hooks live here, not in reliability/, so that pytest-xdist's controller
(which collects nothing) loads them too and writes RELIABILITY.md once from every worker's counts."""

from deploy_pipelines_tests.contract_scenarios import images  # noqa: F401 - shared fixtures
from deploy_pipelines_tests.fixtures_stack import local_stack  # noqa: F401
from deploy_pipelines_tests.reliability import ledger as _ledger
from deploy_pipelines_tests.reliability.ledger import (ledger, pytest_runtest_makereport,  # noqa: F401
                                                       pytest_sessionfinish, pytest_testnodedown)

# The longest modules first (by `make test --durations`): pytest-xdist's --dist loadfile with
# --no-loadscope-reorder (the Makefile's; by default it puts modules with the most tests first, which
# left the few-test end-to-end modules for last) hands out modules in collection order, so a long
# module collected last would keep one worker busy while the other idles. The rest keep their order.
LONGEST_FIRST = ("test_progressive_e2e", "test_standing_e2e", "test_release_e2e", "test_triggers_e2e",
                 "test_faults_e2e", "test_k8s_e2e", "test_planted_secrets_e2e", "test_ui_e2e",
                 "test_ecs_platform", "test_scale_e2e")


def pytest_collection_modifyitems(items):
    _ledger.pytest_collection_modifyitems(items)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))      # stable: order within a module kept
