"""Hooks for the whole suite. The reliability ledger's hooks live here, not in reliability/, so
that pytest-xdist's controller (which collects nothing) loads them too and writes RELIABILITY.md
once from every worker's counts."""

from deploy_pipelines_tests.reliability.ledger import (ledger, pytest_collection_modifyitems,  # noqa: F401
                                                       pytest_runtest_makereport, pytest_sessionfinish,
                                                       pytest_testnodedown)
