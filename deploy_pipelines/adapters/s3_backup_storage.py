"""Backups in S3 through dagster-aws's S3Resource (which owns region, endpoint, retries and
credentials): a dump is streamed in with a multipart upload (parts of `part_size_mb`, no temporary
file, memory bounded by part size x concurrency whatever the dump's size), encrypted server-side,
hashed on the way; restores stream it back out, verified before their last chunk."""

from __future__ import annotations

import dataclasses
from typing import Any, BinaryIO, Iterator, Literal

from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from deploy_pipelines.adapters.backup_storage import (BackupStorage, BackupStorageError, LocalBackupStorage, corrupt,
                                                      record_from_json, record_to_json)
from deploy_pipelines.adapters.records import BackupRecord
from deploy_pipelines.adapters.streams import HashingReader, verified


class S3BackupStorage(BackupStorage):
    """s3://bucket/prefix: each backup is an object plus <key>.meta.json holding its record."""

    s3: S3Resource
    bucket: str
    prefix: str = ""
    server_side_encryption: Literal["AES256", "aws:kms"] = "AES256"
    kms_key_id: str | None = None          # with aws:kms; None = the account's aws/s3 key
    part_size_mb: int = 16                  # multipart part size: memory per in-flight part
    upload_concurrency: int = 4
    _client_cache: Any = PrivateAttr(default=None)

    def _client(self):
        # One client per resource instance: building one loads botocore's models (~0.4 s).
        if self._client_cache is None:
            self._client_cache = self.s3.get_client()
        return self._client_cache

    def _k(self, key: str) -> str:
        return f"{self.prefix.strip('/')}/{key}" if self.prefix.strip("/") else key

    def _encryption(self) -> dict:
        args = {"ServerSideEncryption": self.server_side_encryption}
        if self.server_side_encryption == "aws:kms" and self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args

    def _where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _write_meta(self, record: BackupRecord) -> None:
        self._client().put_object(Bucket=self.bucket, Key=self._k(record.key) + ".meta.json",
                                  Body=record_to_json(record).encode(), ContentType="application/json",
                                  **self._encryption())

    def _get(self, key: str) -> BackupRecord:
        try:
            body = self._client().get_object(Bucket=self.bucket, Key=self._k(key) + ".meta.json")["Body"].read()
        except Exception as exc:  # noqa: BLE001 - botocore's error classes are generated
            raise BackupStorageError(f"no backup {key} in {self._where()}: {exc}") from None
        return record_from_json(body.decode())

    def put_stream(self, stream: BinaryIO, key: str, record: BackupRecord) -> BackupRecord:
        from boto3.s3.transfer import TransferConfig

        part = self.part_size_mb * 1024 * 1024
        reader = HashingReader(stream)
        # The reader has no seek(): s3transfer reads it part by part into a multipart upload
        # (a single PUT below one part), holding at most `upload_concurrency` parts at once.
        try:
            self._client().upload_fileobj(
                reader, self.bucket, self._k(key), ExtraArgs=self._encryption(),
                Config=TransferConfig(multipart_threshold=part, multipart_chunksize=part,
                                      max_concurrency=self.upload_concurrency, use_threads=True))
        except Exception as exc:  # noqa: BLE001 - boto3/s3transfer raise many generated types
            if isinstance(exc, BackupStorageError):
                raise
            raise BackupStorageError(f"upload of {key} to {self._where()} failed: {exc}") from exc
        record = dataclasses.replace(record, key=key, uri=f"s3://{self.bucket}/{self._k(key)}",
                                     sha256=reader.sha256, size=reader.size)
        self._write_meta(record)
        return record

    def open_chunks(self, key: str) -> Iterator[bytes]:
        record = self._get(key)
        body = self._client().get_object(Bucket=self.bucket, Key=self._k(key))["Body"]
        try:
            yield from verified(body.iter_chunks(1 << 20), record.sha256, corrupt(key, record.sha256))
        finally:
            body.close()

    def list(self, prefix: str = "") -> list[BackupRecord]:
        client = self._client()
        records = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._k(prefix)):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".meta.json"):
                    body = client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                    records.append(record_from_json(body.decode()))
        return sorted(records, key=lambda r: (r.created_at, r.key))

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
        client = self._client()
        client.delete_object(Bucket=self.bucket, Key=self._k(key))
        client.delete_object(Bucket=self.bucket, Key=self._k(key) + ".meta.json")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise BackupStorageError(f"{uri!r} names no bucket: write s3://bucket/prefix")
    return bucket, prefix


class BackupStorageAtUri(BackupStorage):
    """Backup storage whose location is only known at run time (an EnvVar holding s3://... or a
    directory): S3 or a local directory, decided by the URI's scheme when first used."""

    uri: str
    s3: S3Resource
    _store_cache: Any = PrivateAttr(default=None)

    def _store(self) -> BackupStorage:
        if self._store_cache is None:
            if self.uri.startswith("s3://"):
                bucket, prefix = parse_s3_uri(self.uri)
                self._store_cache = S3BackupStorage(s3=self.s3, bucket=bucket, prefix=prefix)
            else:
                self._store_cache = LocalBackupStorage(root=self.uri)
        return self._store_cache

    def put_stream(self, stream, key, record):
        return self._store().put_stream(stream, key, record)

    def open_chunks(self, key):
        return self._store().open_chunks(key)

    def list(self, prefix: str = ""):
        return self._store().list(prefix)

    def pin(self, key, by):
        return self._store().pin(key, by)

    def unpin(self, key, by):
        return self._store().unpin(key, by)

    def delete(self, key):
        return self._store().delete(key)
