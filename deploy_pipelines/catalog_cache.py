"""The validated catalog, parsed once per process per content of the file.

Every process that loads the code location needs the catalog: each run worker, each code server,
and inside a run the steps' DeployTarget (which re-reads the file to check it is the one the run
was launched with). At 200 services x 3 environments parsing and validating it costs about a CPU
second even with libyaml, so it is parsed once and shared by everything in the process that asks
for the same bytes of the same file. The file is read each time (cheap), so an edited file is
parsed again: the cache key is its path and content."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from deploy_pipelines.catalog import Catalog, parse_catalog, read_catalog_bytes


@lru_cache(maxsize=8)
def _parse(raw: bytes, path: str) -> Catalog:
    return parse_catalog(raw, Path(path))


def parse_catalog_once(raw: bytes, path: str | os.PathLike) -> Catalog:
    """parse_catalog(raw, path), once per (path, content) in this process. Callers share the
    returned Catalog: treat it as read-only."""
    return _parse(raw, str(path))


def load_catalog_once(path: str | os.PathLike) -> Catalog:
    resolved = Path(path).resolve()
    # read_catalog_bytes names the file and why it cannot be read
    return parse_catalog_once(read_catalog_bytes(resolved), resolved)
