"""Migration files: NNNN_name.up.sql (+ optional NNNN_name.down.sql), or plain NNNN_name.sql."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from deploy_pipelines.adapters.records import Migration

PATTERN = re.compile(r"^(?P<num>\d+)_(?P<rest>[A-Za-z0-9_\-]+?)(?P<kind>\.up|\.down)?\.sql$")


class MigrationFileError(ValueError):
    pass


def load_migrations(directory: Path) -> list[Migration]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    ups: dict[str, Path] = {}
    downs: dict[str, Path] = {}
    for path in directory.iterdir():
        m = PATTERN.match(path.name)
        if not m:
            continue
        name = f"{m['num']}_{m['rest']}"
        (downs if m["kind"] == ".down" else ups)[name] = path
    orphans = sorted(set(downs) - set(ups))
    if orphans:
        raise MigrationFileError(f"{directory}: down file(s) without an up file: {', '.join(orphans)}")
    numbers: dict[int, str] = {}
    for name in ups:
        num = int(name.split("_", 1)[0])
        if num in numbers:
            raise MigrationFileError(f"{directory}: two migrations numbered {num}: {numbers[num]} and {name}")
        numbers[num] = name
    result = []
    for name in sorted(ups, key=lambda n: int(n.split("_", 1)[0])):
        up = ups[name].read_text()
        result.append(Migration(version=name.split("_", 1)[0], name=name, up_sql=up,
                                down_sql=downs[name].read_text() if name in downs else None,
                                sha256=hashlib.sha256(up.encode()).hexdigest()))
    return result


def pending(migrations: list[Migration], applied: list[str], checksums: dict[str, str] | None = None) -> list[Migration]:
    """Migrations not yet applied. An applied migration that changed or vanished is an error:
    the database would silently diverge from the files."""
    names = {m.name: m for m in migrations}
    missing = [a for a in applied if a not in names]
    if missing:
        raise MigrationFileError(f"applied migration(s) missing from this release's files: {', '.join(missing)}")
    for name, digest in (checksums or {}).items():
        if name in names and digest and names[name].sha256 != digest:
            raise MigrationFileError(f"migration {name} was changed after it was applied "
                                     f"(sha256 {digest[:12]} applied, {names[name].sha256[:12]} now): add a new one")
    done = set(applied)
    return [m for m in migrations if m.name not in done]
