"""Backup storage: where dumps live, with sha256, size and pins. Base + the local-directory store."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

from dagster import ConfigurableResource

from deploy_pipelines.adapters.records import BackupRecord


class BackupStorageError(RuntimeError):
    pass


class BackupStorage(ConfigurableResource, ABC):
    """Stores backup files and their metadata; pinned backups are never pruned."""

    @abstractmethod
    def put(self, local: Path, key: str, record: BackupRecord) -> BackupRecord:
        """Store the file under key; returns the record with uri, sha256 and size filled in."""

    @abstractmethod
    def fetch(self, key: str, dest: Path) -> Path:
        """Copy the stored file to dest, verifying its sha256."""

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


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _record_to_json(record: BackupRecord) -> str:
    import dataclasses
    import json

    return json.dumps(dataclasses.asdict(record), indent=2)


def _record_from_json(text: str) -> BackupRecord:
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
        tmp.write_text(_record_to_json(record))
        tmp.replace(meta)

    def put(self, local: Path, key: str, record: BackupRecord) -> BackupRecord:
        import dataclasses
        import shutil

        dest = self.base / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        shutil.copyfile(local, tmp)
        digest = _sha256(tmp)
        tmp.replace(dest)
        record = dataclasses.replace(record, key=key, uri=dest.resolve().as_uri(), sha256=digest,
                                     size=dest.stat().st_size)
        self._write_meta(record)
        return record

    def _get(self, key: str) -> BackupRecord:
        try:
            return _record_from_json(self._meta(key).read_text())
        except OSError:
            raise BackupStorageError(f"no backup {key} in {self.base}") from None

    def fetch(self, key: str, dest: Path) -> Path:
        import shutil

        record = self._get(key)
        shutil.copyfile(self.base / key, dest)
        got = _sha256(dest)
        if got != record.sha256:
            raise BackupStorageError(f"backup {key} is corrupt: sha256 {got[:16]} != recorded {record.sha256[:16]}")
        return Path(dest)

    def list(self, prefix: str = "") -> list[BackupRecord]:
        if not self.base.exists():
            return []
        records = [_record_from_json(p.read_text()) for p in self.base.rglob("*.meta.json")]
        return sorted((r for r in records if r.key.startswith(prefix)), key=lambda r: (r.created_at, r.key))

    def pin(self, key: str, by: str) -> BackupRecord:
        import dataclasses

        record = self._get(key)
        if by not in record.pinned_by:
            record = dataclasses.replace(record, pinned_by=(*record.pinned_by, by))
            self._write_meta(record)
        return record

    def unpin(self, key: str, by: str) -> BackupRecord:
        import dataclasses

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


class S3BackupStorage(BackupStorage):
    """An S3 bucket (or any S3 API: AWS_ENDPOINT_URL): objects plus <key>.meta.json records."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None

    def _client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))

    def _k(self, key: str) -> str:
        return f"{self.prefix.strip('/')}/{key}" if self.prefix.strip("/") else key

    def _write_meta(self, record: BackupRecord) -> None:
        self._client().put_object(Bucket=self.bucket, Key=self._k(record.key) + ".meta.json",
                                  Body=_record_to_json(record).encode())

    def _get(self, key: str) -> BackupRecord:
        try:
            body = self._client().get_object(Bucket=self.bucket, Key=self._k(key) + ".meta.json")["Body"].read()
        except Exception as exc:  # noqa: BLE001 - botocore's error classes are generated
            raise BackupStorageError(f"no backup {key} in s3://{self.bucket}/{self.prefix}: {exc}") from None
        return _record_from_json(body.decode())

    def put(self, local: Path, key: str, record: BackupRecord) -> BackupRecord:
        import dataclasses

        digest = _sha256(local)
        self._client().upload_file(str(local), self.bucket, self._k(key))
        record = dataclasses.replace(record, key=key, uri=f"s3://{self.bucket}/{self._k(key)}", sha256=digest,
                                     size=Path(local).stat().st_size)
        self._write_meta(record)
        return record

    def fetch(self, key: str, dest: Path) -> Path:
        record = self._get(key)
        self._client().download_file(self.bucket, self._k(key), str(dest))
        if _sha256(dest) != record.sha256:
            raise BackupStorageError(f"backup {key} is corrupt: sha256 differs from the recorded one")
        return Path(dest)

    def list(self, prefix: str = "") -> list[BackupRecord]:
        client = self._client()
        records = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._k(prefix)):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".meta.json"):
                    body = client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                    records.append(_record_from_json(body.decode()))
        return sorted(records, key=lambda r: (r.created_at, r.key))

    def pin(self, key: str, by: str) -> BackupRecord:
        import dataclasses

        record = self._get(key)
        if by not in record.pinned_by:
            record = dataclasses.replace(record, pinned_by=(*record.pinned_by, by))
            self._write_meta(record)
        return record

    def unpin(self, key: str, by: str) -> BackupRecord:
        import dataclasses

        record = dataclasses.replace(self._get(key), pinned_by=tuple(p for p in self._get(key).pinned_by if p != by))
        self._write_meta(record)
        return record

    def delete(self, key: str) -> None:
        record = self._get(key)
        if record.pinned_by:
            raise BackupStorageError(f"backup {key} is pinned by {', '.join(record.pinned_by)}: not deleted")
        client = self._client()
        client.delete_object(Bucket=self.bucket, Key=self._k(key))
        client.delete_object(Bucket=self.bucket, Key=self._k(key) + ".meta.json")
