"""The scan gate: real scanner outputs (shared/fixtures/scanners: Trivy JSON and SARIF, pip-audit in
both shapes, npm audit v2, gosec JSON and SARIF) parsed into findings with their exact severity
counts; for each format one finding that fails the gate and one that an allow entry lets through;
expired allow entries; scanners that are missing, exit abnormally or print garbage fail the gate;
the real bandit on the sample service. The migration lint has its own module."""

from __future__ import annotations

import os
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from deploy_pipelines.scanning.gate import AllowEntry, evaluate
from deploy_pipelines.scanning.parsers import PARSERS
from deploy_pipelines.scanning.runner import ScanError, ScannerSpec, run_scanner

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("DEPLOY_SHARED_DIR", REPO.parent / "shared")) / "fixtures" / "scanners"
TODAY = date(2026, 11, 24)

@pytest.fixture(autouse=True)
def _shared_fixtures_present():
    """A missing ../shared is a broken checkout: fail, never skip silently."""
    if not FIXTURES.exists():
        pytest.fail(f"scanner fixtures not found at {FIXTURES}: the shared folder must sit beside the repo (or set DEPLOY_SHARED_DIR)")

# (file, format, counts by severity, a blocking finding id, fail_on)
CASES = [
    ("trivy-image.json", "trivy-json", {"critical": 1, "low": 1}, "CVE-2019-18224", "high"),
    ("trivy-image-all-severities.json", "trivy-json", {"critical": 5, "high": 7, "medium": 4, "low": 1},
     "CVE-2019-5481", "high"),
    ("trivy-image.sarif", "sarif", {"medium": 4}, "CVE-2019-1549", "medium"),
    ("pip-audit.json", "pip-audit-json", {"high": 2}, "PYSEC-2019-179", "high"),
    ("pip-audit-current-format.defectdojo.json", "pip-audit-json", {"high": 7}, "PYSEC-2021-76", "high"),
    ("npm-audit.json", "npm-audit-json", {"critical": 2, "high": 11, "medium": 2, "low": 3}, "1164", "high"),
    ("npm-audit.defectdojo.json", "npm-audit-json", {"medium": 2, "low": 1}, "GHSA-gxpj-cx7g-858c", "medium"),
    ("gosec.json", "gosec-json", {"high": 12, "medium": 14, "low": 12}, "G115", "high"),
    ("gosec.sarif", "sarif", {"medium": 2, "low": 5}, "G304", "medium"),
]


@pytest.mark.parametrize("name,fmt,counts,blocking_id,fail_on", CASES, ids=[c[0] for c in CASES])
def test_fixture_parses_with_exact_counts(name, fmt, counts, blocking_id, fail_on):
    findings = PARSERS[fmt]((FIXTURES / name).read_text())
    assert dict(Counter(f.severity for f in findings)) == counts
    assert all(f.id and f.tool and f.target for f in findings)


@pytest.mark.parametrize("name,fmt,counts,blocking_id,fail_on", CASES, ids=[c[0] for c in CASES])
def test_fixture_blocks_then_allowed_passes(name, fmt, counts, blocking_id, fail_on):
    findings = PARSERS[fmt]((FIXTURES / name).read_text())
    result = evaluate(findings, fail_on, [], TODAY)
    assert not result.ok and blocking_id in {f.id for f in result.blocking}
    # Allow every blocking id (with a reason): the gate passes and says who was allowed and why.
    allow = [AllowEntry(id=i, reason="vendor fix pending", until=date(2026, 12, 31))
             for i in {f.id for f in result.blocking}]
    passed = evaluate(findings, fail_on, allow, TODAY)
    assert passed.ok and len(passed.allowed) == len(result.blocking)
    assert all(f.allowed_by == "vendor fix pending" for f in passed.allowed)


def test_expired_allow_entry_stops_allowing_and_says_so():
    findings = PARSERS["trivy-json"]((FIXTURES / "trivy-image.json").read_text())
    allow = [AllowEntry(id="CVE-2019-18224", reason="no fix yet", until=date(2026, 11, 1))]
    result = evaluate(findings, "high", allow, TODAY)
    assert not result.ok
    assert result.expired and "expired on 2026-11-01" in result.notes[0]
    assert "Expired allow entries" in result.as_markdown()


def test_fail_on_threshold_and_none():
    findings = PARSERS["trivy-json"]((FIXTURES / "trivy-image-all-severities.json").read_text())
    assert len(evaluate(findings, "critical", [], TODAY).blocking) == 5
    assert len(evaluate(findings, "low", [], TODAY).blocking) == 17
    assert evaluate(findings, "none", [], TODAY).ok


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "scanner.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def test_missing_scanner_fails_clearly(tmp_path):
    with pytest.raises(ScanError, match="'trivy-not-installed' is not installed"):
        run_scanner(ScannerSpec(name="trivy", command=["trivy-not-installed", "image", "x"], format="trivy-json"),
                    tmp_path)


def test_abnormal_exit_fails(tmp_path):
    cmd = script(tmp_path, "import sys; sys.stderr.write('database download failed'); sys.exit(3)")
    with pytest.raises(ScanError, match="exited 3.*database download failed"):
        run_scanner(ScannerSpec(name="trivy", command=cmd, format="trivy-json"), tmp_path)


def test_garbage_output_fails(tmp_path):
    cmd = script(tmp_path, "print('Scanning... done, 0 problems')")
    with pytest.raises(ScanError, match="output is not sarif"):
        run_scanner(ScannerSpec(name="semgrep", command=cmd, format="sarif"), tmp_path)


def test_exit_one_with_findings_is_parsed(tmp_path):
    text = (FIXTURES / "gosec.json").read_text()
    (tmp_path / "out.json").write_text(text)
    cmd = script(tmp_path, f"import sys; print(open({str(tmp_path / 'out.json')!r}).read()); sys.exit(1)")
    findings = run_scanner(ScannerSpec(name="gosec", command=cmd, format="gosec-json"), tmp_path)
    assert len(findings) == 38


def test_real_bandit_on_the_sample_service_and_on_a_known_issue(tmp_path):
    spec = ScannerSpec(name="bandit", command=["bandit", "-r", ".", "-f", "sarif", "-q", "-x", "./migrations"],
                       format="sarif")
    clean = run_scanner(spec, REPO / "examples" / "sample-service")
    assert evaluate(clean, "high", [], TODAY).ok, [(f.id, f.severity, f.target) for f in clean]
    (tmp_path / "bad.py").write_text("import subprocess\n\ndef run(cmd):\n"
                                     "    return subprocess.call(cmd, shell=True)\n")
    found = run_scanner(spec, tmp_path)
    b602 = [f for f in found if f.id == "B602"]
    assert b602 and b602[0].severity == "high" and b602[0].target.endswith("bad.py:4")
    assert not evaluate(found, "high", [], TODAY).ok
    assert evaluate(found, "high", [AllowEntry(id="B602", reason="input is a constant")], TODAY).ok
