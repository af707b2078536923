"""Backup storage: where dumps live, with sha256, size and pins. Base + the local-directory store."""

from __future__ import annotations

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
