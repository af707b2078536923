"""Image builders: build a service at a release tag and push it; the base every builder implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from dagster import ConfigurableResource

from deploy_pipelines.adapters.records import BuiltImage


class ImageBuildError(RuntimeError):
    pass


class ImageBuilder(ConfigurableResource, ABC):
    """Builds an image from a source tree and pushes it to a registry."""

    @abstractmethod
    def find(self, repository: str, tag: str) -> str | None:
        """The digest of repository:tag in the registry, or None if it is not there."""

    @abstractmethod
    def build_and_push(self, context_dir: Path, containerfile: str, repository: str, tag: str,
                       build_args: dict[str, str], labels: dict[str, str], log=None,
                       refresh_base: bool = False, secrets: dict[str, str] | None = None) -> BuiltImage:
        """Build context_dir with containerfile, push repository:tag, return the pushed digest.
        refresh_base: pull the base image again and use no cached layer (monthly patches).
        secrets: values the build reads as files (RUN --mount=type=secret,id=NAME), never argv."""
