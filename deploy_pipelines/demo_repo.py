"""The demo's git repository: the sample service at five tags, made from examples/sample-service.

v1.0.0  the service and its items table
v1.1.0  migration 0002 adds a NULL-able `sku` column and backfills it (expand, safely)
v1.2.0  answers 30% of /api/items with HTTP 500 (verify must catch it)
v1.3.0  migration 0003 drops a column in use (the scan gate must stop it); on a side branch, so
        later releases do not carry it
v1.4.0  a good release: one more field in /api/items
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

SKU_UP = """-- Expand: a NULL-able column first, backfilled; NOT NULL comes in a later release.
SET lock_timeout = '5s';
ALTER TABLE items ADD COLUMN sku text;
UPDATE items SET sku = 'SKU-' || lpad(id::text, 6, '0') WHERE sku IS NULL;
"""
SKU_DOWN = """SET lock_timeout = '5s';
ALTER TABLE items DROP COLUMN sku;
"""
DROP_NAME_UP = """-- Unsafe on purpose: the running version still reads this column.
ALTER TABLE items DROP COLUMN name;
"""


def _release_py(version: str, fault: float = 0.0, extra: dict | None = None) -> str:
    return (f'"""What differs between the demo\'s tags (written per tag by deploy_pipelines.demo_repo)."""\n'
            f'VERSION = "{version}"\nFAULT_RATE = {fault}      # share of /api/items answered with HTTP 500\n'
            f"EXTRA: dict = {extra or {}!r}\n")


def create_demo_repo(dest: Path, source: Path) -> dict[str, str]:
    """A bare repository at dest with the five tags; returns tag -> commit."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(dest)], check=True)
    git = ["git", "-c", "user.name=Demo Release Bot", "-c", "user.email=demo@example.invalid",
           "-c", "init.defaultBranch=main"]
    tags: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="demo-repo-") as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(source, work, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for p in (work / "migrations").glob("0002*"):
            p.unlink()

        def commit(tag: str, message: str) -> None:
            subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
            subprocess.run([*git, "-C", str(work), "commit", "-qm", message], check=True)
            subprocess.run([*git, "-C", str(work), "tag", "-a", tag, "-m", message], check=True)
            tags[tag] = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True,
                                       text=True, check=True).stdout.strip()

        subprocess.run([*git, "init", "-q", "-b", "main", str(work)], check=True)
        (work / "release.py").write_text(_release_py("v1.0.0"))
        commit("v1.0.0", "sample service: items API, health, metrics")

        (work / "migrations" / "0002_add_sku.up.sql").write_text(SKU_UP)
        (work / "migrations" / "0002_add_sku.down.sql").write_text(SKU_DOWN)
        (work / "release.py").write_text(_release_py("v1.1.0"))
        commit("v1.1.0", "items get a sku (NULL-able column, backfilled)")

        (work / "release.py").write_text(_release_py("v1.2.0", fault=0.3))
        commit("v1.2.0", "new caching layer (answers 30% of API requests with HTTP 500)")

        subprocess.run([*git, "-C", str(work), "checkout", "-q", "-b", "drop-name"], check=True)
        (work / "migrations" / "0003_drop_name.up.sql").write_text(DROP_NAME_UP)
        (work / "release.py").write_text(_release_py("v1.3.0"))
        commit("v1.3.0", "drop the name column")

        subprocess.run([*git, "-C", str(work), "checkout", "-q", "main"], check=True)
        (work / "release.py").write_text(_release_py("v1.4.0", extra={"currency": "JPY"}))
        commit("v1.4.0", "fix the caching layer; prices in JPY")

        subprocess.run(["git", "-C", str(work), "push", "-q", str(dest), "main", "drop-name", "--tags"], check=True)
    return tags
