"""Hooks and shared fixtures for the whole suite.

`local_stack` and the contract `images` are registered here once, so every module that does not
import them by name shares one stack and one set of images per session (per xdist worker): the
contract modules and the test-bed modules, whose targets have names of their own. The release
end-to-end modules deploy the demo's fixed names (`app` in `demo`, `staging`...) and import
`local_stack` themselves, which gives each of them a stack of its own.

The reliability ledger's hooks live here, not in reliability/, so that pytest-xdist's controller
(which collects nothing) loads them too and writes RELIABILITY.md once from every worker's counts."""

from deploy_pipelines_tests.reliability.ledger import (ledger, pytest_collection_modifyitems,  # noqa: F401
                                                       pytest_runtest_makereport, pytest_sessionfinish,
                                                       pytest_testnodedown)

from deploy_pipelines_tests.contract_scenarios import images  # noqa: E402,F401 - shared fixtures
from deploy_pipelines_tests.fixtures_stack import local_stack  # noqa: E402,F401
