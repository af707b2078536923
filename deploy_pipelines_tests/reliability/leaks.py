"""Where a planted secret must never appear, and a checker that looks in each place.

Each place is a function returning the texts to search (so the checker reads what really exists,
never a list kept by the code under test). `find(values, places)` names every place holding any
value. The checker's self-test plants a value into each place, one at a time, and expects that
place reported (test_planted_secrets.py)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
from dagster import DagsterInstance
from dagster._serdes import serialize_value

Place = Callable[[], Iterable[str]]


class ArgvSampler:
    """Every process's argv (/proc/*/cmdline), read every few ms while a block runs."""

    def __init__(self):
        self.samples: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self):
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if text:
                    self.samples.add(text)
            self._stop.wait(0.02)

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def event_log(instance: DagsterInstance) -> Place:
    def texts():
        for run in instance.get_runs():
            for entry in instance.all_logs(run.run_id):
                yield serialize_value(entry)
    return texts


def run_configs_and_tags(instance: DagsterInstance) -> Place:
    def texts():
        for run in instance.get_runs():
            yield json.dumps(run.run_config, default=str)
            yield json.dumps(run.tags)
    return texts


def files_under(root: Path, skip_suffixes: tuple[str, ...] = ()) -> Place:
    def texts():
        for path in Path(root).rglob("*"):
            if path.is_file() and not path.name.endswith(skip_suffixes):
                yield path.read_bytes().decode(errors="replace")
    return texts


def names_under(root: Path) -> Place:
    def texts():
        for dirpath, dirnames, filenames in os.walk(root):
            yield from dirnames
            yield from filenames
    return texts


def argv(sampler: ArgvSampler) -> Place:
    return lambda: sampler.samples


def container_labels(docker_host: str) -> Place:
    def texts():
        import docker

        client = docker.DockerClient(base_url=docker_host)
        try:
            for c in client.containers.list(all=True):
                yield json.dumps(c.labels)
        finally:
            client.close()
    return texts


def container_configs(docker_host: str) -> Place:
    """What `podman inspect` shows of every container: labels, environment, argv, mounts."""
    def texts():
        import docker

        client = docker.DockerClient(base_url=docker_host)
        try:
            for c in client.containers.list(all=True):
                yield json.dumps(c.attrs, default=str)
        finally:
            client.close()
    return texts


def files_in_containers(docker_host: str, path: str, label: str) -> Place:
    """Every file under `path` inside the running containers carrying `label` (e.g. the nginx
    configs the Docker platform writes into its proxy containers through the API)."""
    def texts():
        import io
        import tarfile

        import docker

        client = docker.DockerClient(base_url=docker_host)
        try:
            for c in client.containers.list(filters={"label": label}):
                stream, _ = c.get_archive(path)
                with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                    for member in tar.getmembers():
                        if member.isfile():
                            yield member.name + "\n" + tar.extractfile(member).read().decode(errors="replace")
        finally:
            client.close()
    return texts


def image_configs(registry: str) -> Place:
    """The config blob (labels, env, history) of every image in the registry."""
    def texts():
        base = f"http://{registry}/v2"
        for repo in httpx.get(f"{base}/_catalog", timeout=10).json().get("repositories") or []:
            for tag in httpx.get(f"{base}/{repo}/tags/list", timeout=10).json().get("tags") or []:
                manifest = httpx.get(f"{base}/{repo}/manifests/{tag}", timeout=10, headers={"Accept": ", ".join([
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])}).json()
                digest = (manifest.get("config") or {}).get("digest")
                if digest:
                    yield httpx.get(f"{base}/{repo}/blobs/{digest}", timeout=10).text
    return texts


def find(values: Iterable[str], places: dict[str, Place]) -> dict[str, list[str]]:
    """{place: [values found there]} for every place holding at least one value."""
    values = [v for v in values if v]
    found: dict[str, list[str]] = {}
    for name, place in places.items():
        hits = {v for text in place() for v in values if v in text}
        if hits:
            found[name] = sorted(hits)
    return found
