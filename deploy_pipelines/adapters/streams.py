"""Byte streams of backups: sha256 and size computed while the bytes pass, and verification of a
stored backup that holds its last chunk back until the whole digest matched, so a restore tool
reading the chunks never sees the end of a corrupt dump (and never commits it)."""

from __future__ import annotations

import hashlib
from typing import BinaryIO, Iterable, Iterator

CHUNK = 1 << 20


class HashingReader:
    """A read()-able wrapper that hashes and counts what is read through it (what boto3's
    upload_fileobj and shutil.copyfileobj ask for). read(n) returns n bytes unless the stream
    ended: a pipe hands out 64 KiB at a time, and s3transfer takes a short first read for the
    whole object (one PUT of everything read into memory instead of a multipart upload)."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data = self._raw.read()
        else:
            parts, want = [], n
            while want > 0 and (part := self._raw.read(want)):
                parts.append(part)
                want -= len(part)
            data = b"".join(parts)
        self._sha.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


def chunks_of(raw: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    while chunk := raw.read(size):
        yield chunk


def verified(chunks: Iterable[bytes], expected_sha256: str, on_mismatch) -> Iterator[bytes]:
    """The chunks, one behind: the last is yielded only once the digest of all of them equals
    expected_sha256; otherwise on_mismatch(actual) is raised in its place."""
    sha = hashlib.sha256()
    held: bytes | None = None
    for chunk in chunks:
        sha.update(chunk)
        if held is not None:
            yield held
        held = chunk
    if sha.hexdigest() != expected_sha256:
        raise on_mismatch(sha.hexdigest())
    if held is not None:
        yield held


class GzipReader:
    """A read()-able gzip stream of another stream, compressed as it is read (level 1: a dump is
    CPU-bound, LOCAL_STACK.md), so a mysqldump can be stored gzipped without a temporary file."""

    def __init__(self, raw: BinaryIO, level: int = 1):
        import zlib

        self._raw = raw
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)      # wbits 31: gzip framing
        self._buf = b""
        self._done = False

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n is None or n < 0 or len(self._buf) < n):
            chunk = self._raw.read(CHUNK)
            if chunk:
                self._buf += self._z.compress(chunk)
            else:
                self._buf += self._z.flush()
                self._done = True
        if n is None or n < 0:
            n = len(self._buf)
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def readable(self) -> bool:
        return True
