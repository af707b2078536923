"""Git: resolve release tags to commits and export the tree at a tag (the git CLI, any URL or path)."""

from __future__ import annotations

import subprocess
import tarfile
import io
from abc import ABC, abstractmethod
from pathlib import Path

from dagster import ConfigurableResource

from deploy_pipelines.redact import redact


class GitError(RuntimeError):
    pass


def parse_tag_listing(out: str) -> dict[str, str]:
    """`git ls-remote --tags` text -> tag name -> commit (the peeled commit of annotated tags)."""
    result: dict[str, str] = {}
    for line in out.splitlines():
        sha, ref = line.split("\t", 1)
        name = ref.removeprefix("refs/tags/")
        if name.endswith("^{}"):
            result[name[:-3]] = sha          # peeled annotated tag wins
        else:
            result.setdefault(name, sha)
    return result


class GitSource(ConfigurableResource, ABC):
    """Where a service's source and release tags come from."""

    @abstractmethod
    def tags(self) -> dict[str, str]:
        """Every tag name -> the commit it points at (peeled)."""

    @abstractmethod
    def resolve(self, ref: str) -> str:
        """The full commit sha a tag or branch names; GitError if it does not exist."""

    @abstractmethod
    def export(self, ref: str, dest: Path) -> Path:
        """Write the tree at ref into dest (created); returns dest."""

    @abstractmethod
    def branch_head(self, branch: str) -> str | None:
        """The commit a branch points at, or None."""

    def commit_time(self, commit: str) -> float | None:
        """When the commit was made (unix seconds), or None where the source cannot tell cheaply;
        the start of a change's lead time."""
        return None

    def commits_between(self, old: str, new: str, limit: int = 50) -> list[tuple[str, str]] | None:
        """Commits reachable from new but not from old, newest first, as (sha, subject): what a
        release changes since the serving one. None where the source cannot tell cheaply."""
        return None


class LocalGit(GitSource):
    """A git repository reachable by the git CLI (a path, file://, ssh or https URL)."""

    repo: str

    def _git(self, *args: str, binary: bool = False) -> bytes | str:
        proc = subprocess.run(["git", *args], capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise GitError(redact(f"git {' '.join(args[:2])} on {self.repo} failed: "
                                  f"{proc.stderr.decode(errors='replace').strip()}", self.repo))
        return proc.stdout if binary else proc.stdout.decode()

    def tags_listing(self) -> str:
        """The raw `git ls-remote --tags` text: cheap to fingerprint (has anything changed?)."""
        return str(self._git("ls-remote", "--tags", self.repo))

    def tags(self) -> dict[str, str]:
        return parse_tag_listing(self.tags_listing())

    def resolve(self, ref: str) -> str:
        tags = self.tags()
        if ref in tags:
            return tags[ref]
        head = self.branch_head(ref)
        if head:
            return head
        if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
            return ref
        raise GitError(redact(f"{self.repo} has no tag or branch named {ref!r}", self.repo))

    def branch_head(self, branch: str) -> str | None:
        out = str(self._git("ls-remote", "--heads", self.repo, branch))
        for line in out.splitlines():
            sha, ref = line.split("\t", 1)
            if ref == f"refs/heads/{branch}":
                return sha
        return None

    def commit_time(self, commit: str) -> float | None:
        if not Path(self.repo).exists():
            return None   # a remote repository: `git show` would need a fetch first
        out = str(self._git("-C", self.repo, "show", "-s", "--format=%ct", commit)).strip()
        return float(out) if out else None

    def commits_between(self, old: str, new: str, limit: int = 50) -> list[tuple[str, str]] | None:
        if not Path(self.repo).exists():
            return None   # a remote repository: `git log` would need a fetch first
        out = str(self._git("-C", self.repo, "log", f"--max-count={limit}", "--format=%H%x09%s", f"{old}..{new}"))
        return [tuple(line.split("\t", 1)) for line in out.splitlines() if "\t" in line]  # type: ignore[misc]

    def export(self, ref: str, dest: Path) -> Path:
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        if Path(self.repo).exists():
            data = self._git("-C", self.repo, "archive", "--format=tar", ref, binary=True)
        else:
            data = self._git("archive", "--remote", self.repo, "--format=tar", ref, binary=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # type: ignore[arg-type]
            tar.extractall(dest, filter="data")
        return dest
