"""Bad catalogs (catalog_corpus.py, over a hundred): each is rejected with its exact expected problem
line, by `deploy-pipelines check` and by the code location (build_definitions) alike, with the same
message, no traceback, no hang and no file written. Also: the base catalog loads in both.
Not covered: bounds measured in time (bench/catalog_bounds.py), valid-catalog semantics
(test_catalog.py)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from deploy_pipelines.catalog import CatalogError
from deploy_pipelines.cli import main as cli_main
from deploy_pipelines.definitions import build_definitions
from deploy_pipelines_tests.reliability.catalog_corpus import BASE, CASES, EXPECTED


def run_check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(["check", str(path)])
    return rc, out.getvalue(), err.getvalue()


def test_corpus_is_large_and_every_case_has_an_expectation():
    assert len(CASES) >= 80
    assert {c.id for c in CASES} == set(EXPECTED)
    assert len({c.id for c in CASES}) == len(CASES)


def test_base_catalog_is_accepted_by_check_and_code_location(tmp_path, monkeypatch):
    path = tmp_path / "deploy.yaml"
    path.write_text(BASE)
    rc, out, err = run_check(path)
    assert (rc, err) == (0, ""), err
    assert "shop: 1 service(s), 2 target(s): ok" in out
    for name in ("API_DATABASE_URL", "SLACK_WEBHOOK", "PIP_INDEX_URL"):
        monkeypatch.setenv(name, "x")
    defs = build_definitions(path)
    assert defs.get_job("release_api_production").name == "release_api_production"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_catalog_rejected_alike(case, tmp_path, ledger):
    ledger("catalog", case.family)
    path = tmp_path / "deploy.yaml"
    path.write_bytes(case.text())
    rc, out, err = run_check(path)
    assert rc == 1 and out == ""
    assert "Traceback" not in err
    with pytest.raises(CatalogError) as info:
        build_definitions(path)
    # Same message from both entry points, and the exact problem expected of this case.
    assert err.strip() == str(info.value)
    assert str(info.value).startswith(f"{path}: invalid deploy catalog")
    assert EXPECTED[case.id] in info.value.problems
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.yaml"]     # no side effect
