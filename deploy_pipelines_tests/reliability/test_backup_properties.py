"""Backups on the real local store, driven by hypothesis: any sequence of backups, release pins,
unpins, retention passes (keep_days/keep_last) and restores keeps every pinned backup and the
newest one, and every restore returns the exact bytes stored; a backup corrupted on disk is
refused on restore (sha256), whichever byte is changed.
Not covered: S3 (test_backups.py runs the same store contract on the moto server)."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from deploy_pipelines.adapters.backup_storage import BackupStorageError, LocalBackupStorage
from deploy_pipelines.adapters.records import BackupRecord
from deploy_pipelines.backups import backup_key, prunable

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
LEDGER = ("backups", "retention with pins (stateful) and sha256 on restore")   # RELIABILITY.md row


class BackupLifecycle(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="rel-backups-"))
        self.storage = LocalBackupStorage(root=str(self.tmp / "store"))
        self.now = START
        self.content: dict[str, bytes] = {}      # what each stored key must restore to
        self.pins: dict[str, set[str]] = {}
        self.n = 0

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(hours=st.integers(0, 24 * 20), data=st.binary(min_size=0, max_size=64))
    def back_up(self, hours, data):
        self.now += timedelta(hours=hours, microseconds=1)
        self.n += 1
        src = self.tmp / "dump"
        src.write_bytes(data)
        key = backup_key("api", "production", f"v1.{self.n}.0", self.now, ".dump")
        self.storage.put(src, key, BackupRecord(uri="", key=key, sha256="", size=0,
                                                created_at=self.now.isoformat()))
        self.content[key] = data
        self.pins[key] = set()

    @precondition(lambda self: self.content)
    @rule(i=st.integers(0, 10_000), by=st.sampled_from(["release-1", "release-2"]))
    def pin(self, i, by):
        key = sorted(self.content)[i % len(self.content)]
        self.storage.pin(key, by)
        self.pins[key].add(by)

    @precondition(lambda self: any(self.pins.values()))
    @rule(i=st.integers(0, 10_000))
    def unpin(self, i):
        key = sorted(k for k, p in self.pins.items() if p)[i % sum(1 for p in self.pins.values() if p)]
        by = sorted(self.pins[key])[0]
        self.storage.unpin(key, by)
        self.pins[key].discard(by)

    @rule(keep_days=st.integers(0, 30), keep_last=st.integers(1, 5))
    def retention(self, keep_days, keep_last):
        for record in prunable(self.storage.list("api/production/"), self.now, keep_days, keep_last):
            self.storage.delete(record.key)          # refuses a pinned backup: that would fail the test
            del self.content[record.key]
            del self.pins[record.key]

    @precondition(lambda self: self.content)
    @rule(i=st.integers(0, 10_000))
    def restore(self, i):
        key = sorted(self.content)[i % len(self.content)]
        out = self.storage.fetch(key, self.tmp / "restored")
        assert out.read_bytes() == self.content[key]

    @invariant()
    def pinned_and_newest_are_kept(self):
        stored = {r.key: r for r in self.storage.list()}
        assert set(stored) == set(self.content)
        for key, by in self.pins.items():
            assert set(stored[key].pinned_by) == by
        if self.content:
            assert max(self.content) in stored       # keys sort by time: the newest always survives


TestBackupLifecycle = BackupLifecycle.TestCase
TestBackupLifecycle.settings = settings(max_examples=20, stateful_step_count=20, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=256), where=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_any_corrupted_byte_is_refused_on_restore(tmp_path, data, where, flip):
    storage = LocalBackupStorage(root=str(tmp_path / "store"))
    src = tmp_path / "dump"
    src.write_bytes(data)
    key = f"k{where}-{flip}.dump"
    storage.put(src, key, BackupRecord(uri="", key=key, sha256="", size=0, created_at=START.isoformat()))
    stored = tmp_path / "store" / key
    raw = bytearray(stored.read_bytes())
    raw[where % len(raw)] ^= flip
    stored.write_bytes(bytes(raw))
    with pytest.raises(BackupStorageError, match="corrupt"):
        storage.fetch(key, tmp_path / "out")
