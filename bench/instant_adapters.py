"""Adapters that answer at once, for measuring the orchestration around them (bench only, never
the package): each implements the abstract base the release ops are typed against, keeps what a
later call must see in memory, and does no I/O beyond what an op asks of it (an exported tree is
an empty folder with a migrations directory; a dump is a few bytes)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path

from deploy_pipelines.adapters.backup_storage import BackupStorage
from deploy_pipelines.adapters.database import Database
from deploy_pipelines.adapters.git import GitSource
from deploy_pipelines.adapters.images import ImageBuilder
from deploy_pipelines.adapters.metrics import MetricsSource
from deploy_pipelines.adapters.notifier import Notifier
from deploy_pipelines.adapters.platform import Platform, RolloutStatus
from deploy_pipelines.adapters.records import BackupRecord, BuiltImage, DeployResult, Release

# State shared by every run of the bench (Dagster may copy resource objects per run).
_BACKUPS: dict[str, BackupRecord] = {}
_PLATFORM: dict[str, Release | None] = {"stable": None, "new": None}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class InstantGit(GitSource):
    def tags(self) -> dict[str, str]:
        return {}

    def resolve(self, ref: str) -> str:
        return _sha(ref)[:40]

    def export(self, ref: str, dest: Path) -> Path:
        (Path(dest) / "migrations").mkdir(parents=True, exist_ok=True)
        return Path(dest)

    def branch_head(self, branch: str) -> str | None:
        return None


class InstantBuilder(ImageBuilder):
    def find(self, repository: str, tag: str) -> str | None:
        return None

    def build_and_push(self, context_dir, containerfile, repository, tag, build_args, labels, log=None,
                       refresh_base=False) -> BuiltImage:
        return BuiltImage(repository, tag, "sha256:" + _sha(repository + tag), labels.get(
            "org.opencontainers.image.revision", ""))


class InstantDatabase(Database):
    url: str = "instant://"

    @property
    def engine(self) -> str:
        return "postgres"

    @property
    def dump_suffix(self) -> str:
        return ".dump"

    def dump(self, dest: Path) -> None:
        Path(dest).write_bytes(b"instant dump")

    def restore(self, src: Path, into_url: str | None = None) -> None:
        pass

    def applied_migrations(self) -> list[str]:
        return []

    def apply(self, migrations) -> list[str]:
        return [m.name for m in migrations]

    def revert(self, migrations) -> list[str]:
        return [m.name for m in migrations]

    def row_counts(self, url: str | None = None) -> dict[str, int]:
        return {"public.items": 3}

    def create_scratch(self, name: str) -> str:
        return self.url

    def drop_scratch(self, name: str) -> None:
        pass

    def query(self, sql: str, url: str | None = None) -> list[tuple]:
        return []


class InstantBackupStorage(BackupStorage):
    def put(self, local: Path, key: str, record: BackupRecord) -> BackupRecord:
        data = Path(local).read_bytes()
        stored = replace(record, uri=f"instant://{key}", sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        _BACKUPS[key] = stored
        return stored

    def fetch(self, key: str, dest: Path) -> Path:
        Path(dest).write_bytes(b"instant dump")
        return Path(dest)

    def list(self, prefix: str = "") -> list[BackupRecord]:
        return [r for k, r in sorted(_BACKUPS.items()) if k.startswith(prefix)]

    def pin(self, key: str, by: str) -> BackupRecord:
        _BACKUPS[key] = replace(_BACKUPS[key], pinned_by=tuple(sorted({*_BACKUPS[key].pinned_by, by})))
        return _BACKUPS[key]

    def unpin(self, key: str, by: str) -> BackupRecord:
        _BACKUPS[key] = replace(_BACKUPS[key], pinned_by=tuple(p for p in _BACKUPS[key].pinned_by if p != by))
        return _BACKUPS[key]

    def delete(self, key: str) -> None:
        _BACKUPS.pop(key, None)


class InstantPlatform(Platform):
    """Instances start and traffic moves the moment they are asked to."""

    def current(self) -> Release | None:
        return _PLATFORM["stable"]

    def status(self) -> RolloutStatus:
        return RolloutStatus(phase="healthy" if _PLATFORM["stable"] else "none", stable=_PLATFORM["stable"],
                             new=_PLATFORM["new"])

    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    def verification_url(self, track) -> str:
        return ""

    def deploy(self, workload, strategy, log) -> DeployResult:
        stable = _PLATFORM["stable"]
        new = Release(self.service, self.environment, workload.version, workload.digest, workload.image,
                      workload.run_id, stable.version if stable else "", stable.image if stable else "",
                      workload.commit, workload)
        _PLATFORM["new"] = new
        log(f"{strategy.kind}: {workload.replicas} instance(s) of {workload.version} ready")
        # No endpoint: verify's health and smoke checks have nothing to wait for.
        return DeployResult(new=new, previous=stable, strategy=strategy.kind, endpoints=[],
                            public_url=self.public_url())

    def set_weight(self, weight: int, log) -> None:
        log(f"traffic: {weight}%")

    def promote(self, log, keep_previous_seconds: float = 0) -> Release:
        if _PLATFORM["new"] is not None:
            _PLATFORM["stable"], _PLATFORM["new"] = _PLATFORM["new"], None
        return _PLATFORM["stable"]

    def abort(self, reason: str, log) -> Release | None:
        _PLATFORM["new"] = None
        return _PLATFORM["stable"]

    def rollback(self, log, to=None) -> Release:
        return _PLATFORM["stable"]

    def cleanup(self, log) -> list[str]:
        return []


class InstantMetrics(MetricsSource):
    def query(self, promql: str) -> float | None:
        return 0.0

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        return [(time.time(), 0.0)]


class InstantNotifier(Notifier):
    def send(self, text: str, channel: str | None = None, failure: bool = False) -> bool:
        return True


def instant_resources(public_port: int = 18080) -> dict:
    """Every adapter of a release job (all but the catalog-reading `target`), answering at once."""
    return {"git": InstantGit(), "builder": InstantBuilder(), "database": InstantDatabase(),
            "backup_storage": InstantBackupStorage(), "notifier": InstantNotifier(), "metrics": InstantMetrics(),
            "platform": InstantPlatform(service="app", environment="bench", public_port=public_port)}
