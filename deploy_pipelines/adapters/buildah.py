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
from deploy_pipelines.redact import redact

REVISION = "org.opencontainers.image.revision"


def _split(repository: str) -> tuple[str, str]:
    registry, _, name = repository.partition("/")
    return registry, name


def _secret_env(name: str) -> str:
    return f"DEPLOY_BUILD_SECRET_{name}"


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

    def _run(self, argv: list[str], what: str, secrets: dict[str, str] | None = None) -> str:
        secrets = secrets or {}
        env = {**os.environ, **{_secret_env(k): v for k, v in secrets.items()}}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_seconds, env=env)
        if proc.returncode != 0:
            out = redact((proc.stdout + proc.stderr)[-3000:], *secrets.values())[-1500:]
            raise ImageBuildError(f"{what} failed (exit {proc.returncode}): {out}")
        return proc.stdout

    def build_and_push(self, context_dir: Path, containerfile: str, repository: str, tag: str,
                       build_args: dict[str, str], labels: dict[str, str], log=None,
                       refresh_base: bool = False, secrets: dict[str, str] | None = None) -> BuiltImage:
        log = log or (lambda _msg: None)
        secrets = secrets or {}
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
        # Secrets reach the build only as RUN --mount=type=secret,id=NAME files: never on argv
        # (visible in ps) nor as build args (kept in the image history).
        for k in secrets:
            argv += ["--secret", f"id={k},env={_secret_env(k)}"]
        for k, v in labels.items():
            argv += ["--label", f"{k}={v}"]
        started = time.monotonic()
        self._run([*argv, str(context_dir)], f"buildah build of {ref}", secrets)
        log(f"built {ref} in {time.monotonic() - started:.1f}s")
        with tempfile.TemporaryDirectory() as tmp:
            digest_file = Path(tmp) / "digest"
            self._run(["buildah", "push", f"--tls-verify={'true' if self.tls_verify else 'false'}",
                       "--digestfile", str(digest_file), ref, f"docker://{ref}"], f"push of {ref}")
            digest = digest_file.read_text().strip()
        return BuiltImage(repository, tag, digest, revision)
