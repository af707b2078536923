"""The reliability suite's ledger: every case records its family and outcome, and a full run of the
suite rewrites RELIABILITY.md (the table of families, counts and results) from what really ran."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "RELIABILITY.md"
COMMAND = "pytest -q -p no:cacheprovider -m reliability deploy_pipelines_tests/reliability"

_ledger: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"passed": 0, "failed": 0})
_seen: dict[str, tuple[str, str]] = {}      # nodeid -> (area, family)


def pytest_collection_modifyitems(items):
    for item in items:
        if "reliability" in str(item.path.parent.name):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def ledger(request):
    """ledger(area, family): count this test under that family of RELIABILITY.md (or set a module's
    LEDGER = (area, family) for tests that cannot take fixtures, e.g. hypothesis state machines)."""
    def record(area: str, family: str) -> None:
        _seen[request.node.nodeid] = (area, family)
    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    key = _seen.get(item.nodeid) or getattr(getattr(item, "module", None), "LEDGER", None)
    if key is not None and (report.when == "call" or report.failed):   # a setup error counts as failed
        _ledger[key]["passed" if report.passed else "failed"] += 1


def _previous_rows() -> dict[tuple[str, str], dict[str, int]]:
    rows = {}
    if REPORT.exists():
        for line in REPORT.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 5 and cells[2].isdigit() and cells[0] not in ("area", "**all**"):
                rows[(cells[0], cells[1])] = {"passed": int(cells[3]), "failed": int(cells[4])}
    return rows


def pytest_sessionfinish(session, exitstatus):
    """Rows of the families that ran are replaced; rows of families this run did not touch (a
    module run alone, or the slow ones left out by -m 'not slow') are kept from the last run.
    Under pytest-xdist each worker hands its counts to the controller, which writes the file once."""
    config = session.config
    if hasattr(config, "workeroutput"):          # an xdist worker
        config.workeroutput["reliability_ledger"] = [[a, f, n["passed"], n["failed"]] for (a, f), n in _ledger.items()]
        return
    whole_modules = not config.option.keyword and not any("::" in a for a in config.args)
    if not _ledger or not whole_modules:
        return
    _write_report()


def pytest_testnodedown(node, error):
    """xdist controller: add a finished worker's counts to the ledger."""
    for area, family, passed, failed in (getattr(node, "workeroutput", {}) or {}).get("reliability_ledger", []):
        _ledger[(area, family)]["passed"] += passed
        _ledger[(area, family)]["failed"] += failed


def _write_report() -> None:
    table = {**_previous_rows(), **_ledger}
    rows = ["| area | case family | cases | passed | failed |", "|---|---|---|---|---|"]
    for (area, family), n in sorted(table.items()):
        rows.append(f"| {area} | {family} | {n['passed'] + n['failed']} | {n['passed']} | {n['failed']} |")
    total = {k: sum(n[k] for n in table.values()) for k in ("passed", "failed")}
    rows.append(f"| **all** | | **{total['passed'] + total['failed']}** | **{total['passed']}** | "
                f"**{total['failed']}** |")
    REPORT.write_text(
        "# Reliability\n\n"
        "Written by the reliability suite itself at the end of a run (do not edit by hand):\n\n"
        f"    cd <repo> && .venv/bin/{COMMAND}\n\n"
        "Each row counts test cases of one family; a case passes only when the input was handled as\n"
        "expected (the exact error, no traceback, no side effect; no planted value found). The suite\n"
        "fails if any case fails. A run of some modules only replaces the rows of the families it ran.\n\n"
        + "\n".join(rows) + "\n")
