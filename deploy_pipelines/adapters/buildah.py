"""Images built with buildah (no daemon) and pushed to an OCI registry; the pushed digest is what
a deploy uses. Storage and registry settings come from CONTAINERS_* files (the stack's podman
service reads the same ones)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from deploy_pipelines.adapters.images import ImageBuilder, ImageBuildError
from deploy_pipelines.adapters.records import BuiltImage
from deploy_pipelines.adapters.registry import OciRegistry

REVISION = "org.opencontainers.image.revision"


def _split(repository: str) -> tuple[str, str]:
    registry, _, name = repository.partition("/")
    return registry, name


class BuildahBuilder(ImageBuilder):
    """buildah build --isolation chroot, then push with --digestfile."""

    tls_verify: bool = False          # loopback registries speak plain HTTP
    pull_always: bool = False         # patch builds refresh the base image
    timeout_seconds: int = 1800

    def find(self, repository: str, tag: str) -> str | None:
        registry, name = _split(repository)
        return OciRegistry(registry).manifest_digest(name, tag)

    def _revision(self, repository: str, tag: str) -> str | None:
        registry, name = _split(repository)
        config = OciRegistry(registry).config(name, tag) or {}
        return ((config.get("config") or {}).get("Labels") or {}).get(REVISION)

    def _run(self, argv: list[str], what: str) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_seconds, env=os.environ)
        if proc.returncode != 0:
            raise ImageBuildError(f"{what} failed (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-1500:]}")
        return proc.stdout

    def build_and_push(self, context_dir: Path, containerfile: str, repository: str, tag: str,
                       build_args: dict[str, str], labels: dict[str, str], log=None,
                       refresh_base: bool = False) -> BuiltImage:
        log = log or (lambda _msg: None)
        revision = labels.get(REVISION, "")
        refresh = refresh_base or self.pull_always
        existing = self.find(repository, tag)
        if existing and revision and self._revision(repository, tag) == revision and not refresh:
            log(f"{repository}:{tag} already built from {revision[:12]}: not rebuilding")
            return BuiltImage(repository, tag, existing, revision)
        ref = f"{repository}:{tag}"
        argv = ["buildah", "build", "--isolation", "chroot", "--layers", "-f", str(Path(context_dir) / containerfile),
                "-t", ref, f"--pull={'always' if refresh else 'missing'}",
                *(["--no-cache"] if refresh else []),
                f"--tls-verify={'true' if self.tls_verify else 'false'}"]
        for k, v in build_args.items():
            argv += ["--build-arg", f"{k}={v}"]
        for k, v in labels.items():
            argv += ["--label", f"{k}={v}"]
        started = time.monotonic()
        self._run([*argv, str(context_dir)], f"buildah build of {ref}")
        log(f"built {ref} in {time.monotonic() - started:.1f}s")
        with tempfile.TemporaryDirectory() as tmp:
            digest_file = Path(tmp) / "digest"
            self._run(["buildah", "push", f"--tls-verify={'true' if self.tls_verify else 'false'}",
                       "--digestfile", str(digest_file), ref, f"docker://{ref}"], f"push of {ref}")
            digest = digest_file.read_text().strip()
        return BuiltImage(repository, tag, digest, revision)
