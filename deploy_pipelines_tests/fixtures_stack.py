"""One whole local stack (PostgreSQL, MariaDB, registry, Podman API, nginx, Prometheus, the base
image) in a temp folder, shared by the end-to-end release tests of one session, and the demo git
repository. Stopped by PID at the end of the session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    from deploy_pipelines.stack.local import LocalStack

    stack = LocalStack(tmp_path_factory.mktemp("stack"))
    saved = dict(os.environ)
    try:
        env = stack.up(log=lambda *_: None)
        yield stack, env
    finally:
        stack.down(log=lambda *_: None)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def demo_repo(tmp_path_factory) -> Path:
    from deploy_pipelines.demo_repo import create_demo_repo

    repo = tmp_path_factory.mktemp("demo-repo") / "sample.git"
    create_demo_repo(repo, REPO_ROOT / "examples" / "sample-service")
    return repo


def load_code_location(catalog: Path) -> None:
    """Point deploy_pipelines.definitions at this catalog. Runs executed in-process reconstruct
    their job from the module, which an earlier test may have imported with another catalog."""
    import importlib

    import deploy_pipelines.definitions as definitions

    from dagster._core.definitions.reconstruct import ReconstructableJob

    os.environ["DEPLOY_CATALOG"] = str(catalog)
    importlib.reload(definitions)
    # ReconstructableJob keeps its last definition (lru_cache): forget the other catalog's.
    ReconstructableJob.get_repository_definition.cache_clear()
    ReconstructableJob.get_definition.cache_clear()


def add_tag(repo: Path, tag: str, files: dict[str, str], message: str) -> str:
    """Commit files on top of main in a scratch clone and push the tag: a release of our own making."""
    work = repo.parent / f"work-{tag}"
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", message], check=True)
    subprocess.run([*git, "-C", str(work), "tag", "-a", tag, "-m", message], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "HEAD", tag], check=True)
    return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
