"""Backup storage: where dumps live, with sha256, size and pins. Base + the local-directory store;
S3 (through dagster-aws's S3Resource) in adapters/s3_backup_storage.py.

Dumps arrive as streams (put_stream) and leave as verified chunks (open_chunks): sha256 and size
are computed while the bytes pass, and no temporary copy of a dump is ever written."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO, Iterator

from dagster import ConfigurableResource

from deploy_pipelines.adapters.records import BackupRecord
from deploy_pipelines.adapters.streams import HashingReader, chunks_of, verified


class BackupStorageError(RuntimeError):
    pass


class BackupStorage(ConfigurableResource, ABC):
    """Stores backup files and their metadata; pinned backups are never pruned."""

    @abstractmethod
    def put_stream(self, stream: BinaryIO, key: str, record: BackupRecord) -> BackupRecord:
        """Store what stream yields until EOF under key, hashing it on the way; returns the record
        with uri, sha256 and size filled in."""

    @abstractmethod
    def open_chunks(self, key: str) -> Iterator[bytes]:
        """The stored bytes in chunks; BackupStorageError instead of the last chunk when their
        sha256 differs from the recorded one (a reader never sees the end of a corrupt dump)."""

    def put(self, local: Path, key: str, record: BackupRecord) -> BackupRecord:
        """Store a file under key (put_stream over the file)."""
        with open(local, "rb") as f:
            return self.put_stream(f, key, record)

    def fetch(self, key: str, dest: Path) -> Path:
        """Copy the stored backup to dest, verifying its sha256 (dest is left absent if corrupt)."""
        dest = Path(dest)
        partial = dest.with_name(dest.name + ".partial")
        try:
            with open(partial, "wb") as out:
                for chunk in self.open_chunks(key):
                    out.write(chunk)
            partial.replace(dest)
        finally:
            partial.unlink(missing_ok=True)
        return dest

    @abstractmethod
    def list(self, prefix: str = "") -> list[BackupRecord]:
        """Records under prefix, oldest first."""

    @abstractmethod
    def pin(self, key: str, by: str) -> BackupRecord: ...

    @abstractmethod
    def unpin(self, key: str, by: str) -> BackupRecord: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one backup; BackupStorageError if it is pinned."""


def corrupt(key: str, recorded: str):
    """The error a verified read raises when the bytes do not match the record."""
    return lambda got: BackupStorageError(f"backup {key} is corrupt: sha256 {got[:16]} != recorded {recorded[:16]}")


def record_to_json(record: BackupRecord) -> str:
    import json

    return json.dumps(dataclasses.asdict(record), indent=2)


def record_from_json(text: str) -> BackupRecord:
    import json

    data = json.loads(text)
    data["pinned_by"] = tuple(data.get("pinned_by") or ())
    data["tables"] = tuple(tuple(t) for t in data.get("tables") or ())
    return BackupRecord(**data)


class LocalBackupStorage(BackupStorage):
    """A directory (path or file:// URL): <key> plus <key>.meta.json holding the record."""

    root: str

    @property
    def base(self) -> Path:
        return Path(self.root.removeprefix("file://"))

    def _meta(self, key: str) -> Path:
        return self.base / f"{key}.meta.json"

    def _write_meta(self, record: BackupRecord) -> None:
        meta = self._meta(record.key)
        tmp = meta.with_name(meta.name + ".tmp")
        tmp.write_text(record_to_json(record))
        tmp.replace(meta)

    def put_stream(self, stream: BinaryIO, key: str, record: BackupRecord) -> BackupRecord:
        import shutil

        dest = self.base / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Written under a .partial name and renamed once complete: a crash never leaves a
        # half dump that looks whole.
        partial = dest.with_name(dest.name + ".partial")
        reader = HashingReader(stream)
        try:
            with open(partial, "wb") as out:
                shutil.copyfileobj(reader, out, 1 << 20)
            partial.replace(dest)
        finally:
            partial.unlink(missing_ok=True)
        record = dataclasses.replace(record, key=key, uri=dest.resolve().as_uri(), sha256=reader.sha256,
                                     size=reader.size)
        self._write_meta(record)
        return record

    def _get(self, key: str) -> BackupRecord:
        try:
            return record_from_json(self._meta(key).read_text())
        except OSError:
            raise BackupStorageError(f"no backup {key} in {self.base}") from None

    def open_chunks(self, key: str) -> Iterator[bytes]:
        record = self._get(key)
        with open(self.base / key, "rb") as f:
            yield from verified(chunks_of(f), record.sha256, corrupt(key, record.sha256))

    def list(self, prefix: str = "") -> list[BackupRecord]:
        if not self.base.exists():
            return []
        records = [record_from_json(p.read_text()) for p in self.base.rglob("*.meta.json")]
        return sorted((r for r in records if r.key.startswith(prefix)), key=lambda r: (r.created_at, r.key))

    def pin(self, key: str, by: str) -> BackupRecord:
        record = self._get(key)
        if by not in record.pinned_by:
            record = dataclasses.replace(record, pinned_by=(*record.pinned_by, by))
            self._write_meta(record)
        return record

    def unpin(self, key: str, by: str) -> BackupRecord:
        record = self._get(key)
        record = dataclasses.replace(record, pinned_by=tuple(p for p in record.pinned_by if p != by))
        self._write_meta(record)
        return record

    def delete(self, key: str) -> None:
        record = self._get(key)
        if record.pinned_by:
            raise BackupStorageError(f"backup {key} is pinned by {', '.join(record.pinned_by)}: not deleted")
        (self.base / key).unlink(missing_ok=True)
        self._meta(key).unlink(missing_ok=True)
