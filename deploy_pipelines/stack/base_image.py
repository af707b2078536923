"""The Python base image the sample service is built FROM. No public registry is reachable here,
so the project makes its own: debootstrap a minimal Debian with python3, psycopg2 and
prometheus-client from the mirror apt already uses, cache the rootfs tarball, import it with
buildah and push it to the local registry. `refresh=True` rebuilds it (monthly patching)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from deploy_pipelines.stack.process import StackError, run

# nginx-light: the same rootfs is also the nginx image the Docker platform runs its proxy from.
PACKAGES = ["python3", "python3-psycopg2", "python3-prometheus-client", "ca-certificates", "nginx-light"]
SUITE = "bookworm"
NAME = "deploy-pipelines/python-base"
NGINX_NAME = "deploy-pipelines/nginx"


def apt_mirror() -> str:
    """The Debian mirror URI apt's own sources name (never hard-coded)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        text = path.read_text()
        for block in text.split("\n\n"):
            if re.search(rf"^Suites:.*\b{SUITE}\b", block, re.M) and "security" not in block:
                m = re.search(r"^URIs:\s*(\S+)", block, re.M)
                if m:
                    return m.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2].startswith(SUITE) and "security" not in line:
                return parts[1] if not parts[1].startswith("[") else parts[2]
    raise StackError("no Debian mirror found in /etc/apt/sources.list(.d): cannot debootstrap the base image")


def cache_dir() -> Path:
    d = Path(os.environ.get("DEPLOY_PIPELINES_CACHE", Path.home() / ".cache" / "deploy_pipelines"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def rootfs_tarball(refresh: bool = False, log=print) -> Path:
    """A cached tar of the debootstrapped rootfs; rebuilt when refresh or the package list changes."""
    key = hashlib.sha256(" ".join([SUITE, *PACKAGES]).encode()).hexdigest()[:12]
    tar = cache_dir() / f"base-{SUITE}-{key}.tar"
    if tar.exists() and not refresh:
        return tar
    # Two runs side by side (or two pytest workers) on a clean machine: one builds, the other waits
    # for it and uses its tarball.
    with open(cache_dir() / f".base-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tar.exists() and not refresh:
            return tar
        return _build_rootfs(tar, log)


def _build_rootfs(tar: Path, log) -> Path:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="deploy-base-", dir=cache_dir()) as tmp:
        root = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root),
             apt_mirror()], "debootstrap of the base image", timeout=900)
        # Slim it: apt caches and docs are not needed at run time.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                     "usr/share/locale"):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk).mkdir(parents=True, exist_ok=True)
        partial = tar.with_suffix(".partial")
        run(["tar", "-C", str(root), "-cf", str(partial), "."], "tar of the base rootfs", timeout=300)
        partial.rename(tar)
    log(f"  base rootfs built in {time.monotonic() - started:.0f}s -> {tar}")
    return tar


def ensure_base_image(registry: str, env: dict[str, str] | None = None, refresh: bool = False,
                      log=print, name: str = NAME, cmd: str = "python3") -> str:
    """Push the base image to registry (once per registry unless refresh); returns repo@digest.
    name/cmd: the nginx image is the same rootfs under another name, run as nginx."""
    from deploy_pipelines.adapters.registry import OciRegistry

    ref = f"{registry}/{name}:{SUITE}"
    reg = OciRegistry(registry)
    existing = reg.manifest_digest(name, SUITE)
    if existing and not refresh:
        return f"{registry}/{name}@{existing}"
    tar = rootfs_tarball(refresh=refresh, log=log)
    env = {**os.environ, **(env or {})}
    work = f"deploy-base-{os.getpid()}-{int(time.time())}"
    run(["buildah", "from", "--name", work, "scratch"], "buildah from scratch", env=env)
    try:
        run(["buildah", "add", work, str(tar), "/"], "buildah add base rootfs", env=env, timeout=600)
        run(["buildah", "config", "--env", "PYTHONUNBUFFERED=1", "--cmd", cmd, work],
            "buildah config", env=env)
        run(["buildah", "commit", "--rm", work, ref], "buildah commit base", env=env, timeout=600)
    except Exception:
        subprocess.run(["buildah", "rm", work], capture_output=True, env=env)
        raise
    with tempfile.TemporaryDirectory() as tmp:
        digest_file = Path(tmp) / "digest"
        run(["buildah", "push", "--tls-verify=false", "--digestfile", str(digest_file), ref, f"docker://{ref}"],
            "buildah push base", env=env, timeout=600)
        digest = digest_file.read_text().strip()
    return f"{registry}/{name}@{digest}"
