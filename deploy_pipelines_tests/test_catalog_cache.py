"""The catalog is parsed once per process per content: the code location and the steps' DeployTarget
share one parse of the same bytes; an edited file is parsed again; a bad file still fails with the
file named (errors are not cached). Not covered: timings (bench/scale.py, BENCHMARKS.md)."""

from __future__ import annotations

import pytest

from deploy_pipelines.catalog import CatalogError, read_catalog_bytes
from deploy_pipelines.catalog_cache import load_catalog_once, parse_catalog_once
from deploy_pipelines_tests.reliability.catalog_corpus import BASE


def test_same_bytes_one_parse_edited_file_parsed_again(tmp_path):
    path = (tmp_path / "deploy.yaml").resolve()
    path.write_text(BASE)
    first = load_catalog_once(path)
    # what DeployTarget.setup_for_execution does inside a run: the same object, not a second parse
    assert parse_catalog_once(read_catalog_bytes(path), path) is first
    path.write_text(BASE.replace("replicas: 3", "replicas: 4"))
    edited = load_catalog_once(path)
    assert edited is not first
    assert edited.services["api"].targets["production"].replicas == 4
    assert first.services["api"].targets["production"].replicas == 3


def test_a_bad_file_fails_each_time_naming_it(tmp_path):
    path = tmp_path / "deploy.yaml"
    path.write_text(BASE.replace("replicas: 3", "replicas: many"))
    for _ in range(2):
        with pytest.raises(CatalogError, match="deploy.yaml"):
            load_catalog_once(path)
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog_once(tmp_path / "missing.yaml")
