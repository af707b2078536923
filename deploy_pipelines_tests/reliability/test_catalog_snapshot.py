"""A run uses the catalog it was launched with: the job carries the file's sha256 as a run tag; a
file edited before the run starts fails it with a clear message; a file edited while it runs
does not change what later steps read. Not covered: the UI showing the tag (it is a job tag)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterResourceFunctionError, job, op

from deploy_pipelines.catalog import catalog_digest
from deploy_pipelines.steps.common import CATALOG_TAG, DeployTarget
from deploy_pipelines_tests.reliability.catalog_corpus import BASE

EDITED = BASE.replace("replicas: 3", "replicas: 4")


def make_job(path: Path):
    @op
    def first(target: DeployTarget) -> int:
        seen = target.target.replicas
        path.write_text(EDITED)            # someone edits the catalog while the run is under way
        return seen

    @op
    def second(target: DeployTarget, before: int) -> tuple[int, int]:
        return before, target.target.replicas

    @job(resource_defs={"target": DeployTarget(catalog_path=str(path), service="api", environment="production")})
    def release():
        second(first())

    return release


def test_edit_during_the_run_does_not_change_it(tmp_path, ledger):
    ledger("catalog", "snapshot at launch")
    path = tmp_path / "deploy.yaml"
    path.write_text(BASE)
    result = make_job(path).execute_in_process(tags={CATALOG_TAG: catalog_digest(BASE.encode())})
    assert result.success
    assert result.output_for_node("second") == (3, 3)


def test_edit_before_the_run_starts_fails_it_clearly(tmp_path, ledger):
    ledger("catalog", "snapshot at launch")
    path = tmp_path / "deploy.yaml"
    path.write_text(EDITED)
    with pytest.raises(DagsterResourceFunctionError) as info:
        make_job(path).execute_in_process(tags={CATALOG_TAG: catalog_digest(BASE.encode())})
    assert "changed since this run was launched (sha256 " in str(info.value.__cause__)
    assert path.read_text() == EDITED           # nothing ran: the first op never edited anything
