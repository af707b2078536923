"""The validated catalog, parsed once per process per version of the file.

Every process that loads the code location needs the catalog: each run worker, each code server.
At 200 services x 3 environments parsing and validating it costs seconds with the pure-Python YAML
loader, so it is read once and shared by everything in the process that asks for the same file
(the code location here; the steps' DeployTarget can use it the same way). A file that changes is
read again: the cache key holds its modification time and size."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from deploy_pipelines.catalog import Catalog, load_catalog


@lru_cache(maxsize=8)
def _load(path: str, _mtime_ns: int, _size: int) -> Catalog:
    return load_catalog(path)


def load_catalog_once(path: str | os.PathLike) -> Catalog:
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return load_catalog(resolved)          # the loader names the file and why it cannot be read
    return _load(str(resolved), stat.st_mtime_ns, stat.st_size)
