"""The code location: the catalog named by $DEPLOY_CATALOG (default: the demo catalog) -> jobs,
sensors and schedules. A bad catalog fails here with the file and field; nothing is built."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions

from deploy_pipelines.catalog import default_catalog_path, load_catalog
from deploy_pipelines.jobs import build_jobs


def build_definitions(catalog_path: str | Path | None = None) -> Definitions:
    path = Path(catalog_path) if catalog_path else default_catalog_path()
    catalog = load_catalog(path)
    return Definitions(jobs=build_jobs(catalog, str(path.resolve())))


defs = build_definitions()
