"""Databases: dump, restore, migrate. The base every engine (postgres, mysql, rds) implements.

Secrets: the connection URL comes from an EnvVar and is handed to client tools through their
environment (PGPASSWORD, MYSQL_PWD), never on argv and never in a log line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Iterable

from dagster import ConfigurableResource

from deploy_pipelines.adapters.records import Migration


class DatabaseError(RuntimeError):
    pass


class MigrationFailed(DatabaseError):
    """A migration failed; `applied` lists those that did succeed before it (for down/restore)."""

    def __init__(self, message: str, migration: str, applied: list[str]):
        super().__init__(message)
        self.migration = migration
        self.applied = applied


class Database(ConfigurableResource, ABC):
    """One service's database."""

    url: str   # from EnvVar: never log it

    @property
    @abstractmethod
    def engine(self) -> str:
        """postgres | mysql"""

    @property
    @abstractmethod
    def dump_suffix(self) -> str:
        """File suffix of a dump, e.g. '.dump' (pg custom format) or '.sql.gz'."""

    @abstractmethod
    def dump(self, dest: Path) -> None:
        """Write a consistent full dump of the database to dest."""

    @abstractmethod
    def restore(self, src: Path, into_url: str | None = None) -> None:
        """Restore a dump made by dump(): into this database (replacing its contents) or into_url."""

    def dump_stream(self) -> AbstractContextManager[BinaryIO]:
        """The dump as a stream (the dump tool's stdout): read it to EOF inside the block; leaving
        the block raises DatabaseError if the tool failed, and stops it if not read to the end."""
        raise DatabaseError(f"{self.engine} cannot stream a dump")

    def restore_stream(self, chunks: Iterable[bytes], into_url: str | None = None) -> None:
        """Restore a dump from chunks, replacing the database's contents only if every chunk
        arrived (an exception from the chunks leaves the database as it was)."""
        raise DatabaseError(f"{self.engine} cannot restore from a stream")

    @abstractmethod
    def applied_migrations(self) -> list[str]:
        """Names of migrations recorded in the schema-version table, in order applied."""

    def applied_with_checksums(self) -> list[tuple[str, str]]:
        """(name, sha256 recorded when applied) in order applied."""
        return [(name, "") for name in self.applied_migrations()]

    @abstractmethod
    def apply(self, migrations: list[Migration]) -> list[str]:
        """Apply pending migrations in order, recording each; MigrationFailed on error."""

    @abstractmethod
    def revert(self, migrations: list[Migration]) -> list[str]:
        """Run the down scripts of these (applied) migrations in reverse order, unrecording each."""

    @abstractmethod
    def row_counts(self, url: str | None = None) -> dict[str, int]:
        """Exact row count per user table (schema.table) of this database or of url."""

    @abstractmethod
    def create_scratch(self, name: str) -> str:
        """Create an empty scratch database beside this one; returns its URL."""

    @abstractmethod
    def drop_scratch(self, name: str) -> None:
        """Drop a scratch database made by create_scratch."""

    @abstractmethod
    def query(self, sql: str, url: str | None = None) -> list[tuple]:
        """Run one read query; for verification and tests."""


class NoDatabase(Database):
    """For services without a database: every step that needs one checks the catalog first."""

    url: str = ""

    @property
    def engine(self) -> str:
        return "none"

    @property
    def dump_suffix(self) -> str:
        return ""

    def _none(self, *args, **kwargs):
        raise DatabaseError("this service has no database in the catalog")

    dump = restore = apply = revert = row_counts = create_scratch = drop_scratch = query = _none

    def applied_migrations(self) -> list[str]:
        return []
