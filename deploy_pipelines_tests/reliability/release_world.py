"""One release world for the reliability suite's end-to-end families (planted secrets, faults; the
`relconc` target is for concurrent launches, whose module is not on this branch yet): the session's local stack, PostgreSQL databases of its own, a small catalog and a
Dagster instance in a temp folder. Session-scoped, so the families share one stack.

The catalog holds the demo's rolling sample service twice: `app`, built from its git tags by the
release (once: v1.0.0 in environment `rel`, with a build secret), and `fleet`, the same service
from images built elsewhere (`image.external`), one target per family (`rel`, `relfault`,
`relconc`). Building costs minutes on a loaded 2-core machine; fleet's images are derived from
app's one build in milliseconds (derive_image). Every secret the catalog can hold is a
`{env: NAME}` holding a unique planted value. Every setting a fault test turns (Prometheus URL,
backup root, webhook) is an `{env: NAME}` too, so a test changes the world through the
environment, never the catalog."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from dagster import ReexecutionOptions, execute_job, instance_for_test
from dagster._core.definitions.reconstruct import ReconstructableRepository

from deploy_pipelines.loadgen import LoadGenerator
from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.fixtures_stack import demo_repo, load_code_location, local_stack  # noqa: F401
from deploy_pipelines_tests.reliability import leaks

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("rel", "relfault", "relconc")   # planted secrets, faults, concurrency: a target each
REPOSITORY = "demo/sample-service"              # app builds it; fleet's versions are derived from app's build
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")


def job(kind: str, service: str, environment: str) -> str:
    return f"{kind}_{service}_{environment}"


class Webhook:
    """A Slack-compatible incoming webhook on loopback (its path holds a planted secret)."""

    def __init__(self, secret: str):
        self.messages: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/{secret}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def catalog_doc(ports: dict[str, int]) -> dict:
    """ports: {"app:rel": port, "fleet:rel": port, ...}."""
    demo = yaml.safe_load((REPO_ROOT / "examples" / "demo" / "deploy.yaml").read_text())
    app = demo["services"]["app"]
    app["image"] = {**app["image"], "build_args": {**app["image"]["build_args"], "NPM_TOKEN": {"env": "REL_NPM_TOKEN"}}}
    app["database"]["url"] = {"env": "APP_REL_DATABASE_URL"}
    fleet = {**app, "image": {"repository": REPOSITORY, "external": True}}
    environments = {name: {**demo["environments"]["demo"], "prometheus": {"env": f"{name.upper()}_PROMETHEUS_URL"},
                           "backup_root": {"env": f"{name.upper()}_BACKUP_ROOT"}} for name in ENVIRONMENTS}
    targets: dict[str, dict] = {"app": {}, "fleet": {}}
    for key, port in ports.items():
        service, environment = key.split(":")
        targets[service][environment] = {
            **app["targets"]["demo"], "port": port,
            "database_url": {"env": f"{service.upper()}_{environment.upper()}_DATABASE_URL"},
            "env": {"API_KEY": {"env": "REL_API_KEY"}, "GREETING": "hello"}}
    app["targets"], fleet["targets"] = targets["app"], targets["fleet"]
    # Triggers off: a daemon on this code location (the concurrency family) launches only what a test submits.
    return {"project": "reliability", "environments": environments, "services": {"app": app, "fleet": fleet},
            "triggers": {"enabled": False},
            "notify": {"slack": {"webhook": {"env": "REL_SLACK_WEBHOOK"}}, "ui_url": "http://127.0.0.1:3000"}}


@pytest.fixture(scope="session")
def rel_world(local_stack, demo_repo, tmp_path_factory):  # noqa: F811
    stack, env = local_stack
    from deploy_pipelines.stack.postgres import PostgresServer

    pg = PostgresServer.start(stack.root / "postgres")
    tmp = tmp_path_factory.mktemp("rel-world")
    planted = {name: f"planted-{name}-{uuid.uuid4().hex[:12]}" for name in
               ("database-password", "build-secret", "target-secret", "webhook")}
    webhook = Webhook(planted["webhook"])
    targets, settings = {}, {}
    for key in ("app:rel", *(f"fleet:{e}" for e in ENVIRONMENTS)):
        service, environment = key.split(":")
        db_name = f"{service}_{environment}"
        pg.create_database(db_name)
        # Trust authentication: the server accepts the planted password, and every client still carries it.
        db = pg.url(db_name).replace("postgres@", f"postgres:{planted['database-password']}@")
        targets[key] = {"port": free_port(), "db": db, "backups": tmp / "backups" / environment,
                        "service": service, "environment": environment}
        settings[f"{service.upper()}_{environment.upper()}_DATABASE_URL"] = db
    for environment in ENVIRONMENTS:
        settings[f"{environment.upper()}_PROMETHEUS_URL"] = env["DEPLOY_PROMETHEUS_URL"]
        settings[f"{environment.upper()}_BACKUP_ROOT"] = f"file://{tmp / 'backups' / environment}"
    catalog = tmp / "deploy.yaml"
    catalog.write_text(yaml.safe_dump(catalog_doc({k: t["port"] for k, t in targets.items()}), sort_keys=False))
    mp = pytest.MonkeyPatch()
    for k, v in {**env, **settings, "DEMO_REPO": str(demo_repo), "DEPLOY_CATALOG": str(catalog),
                 "REL_NPM_TOKEN": planted["build-secret"], "REL_API_KEY": planted["target-secret"],
                 "REL_SLACK_WEBHOOK": webhook.url}.items():
        mp.setenv(k, v)
    load_code_location(catalog)
    (tmp / "home").mkdir()
    # Every process's argv, sampled for the whole session: the planted-secrets family searches it.
    with instance_for_test(temp_dir=str(tmp / "home")) as instance, leaks.ArgvSampler() as sampler:
        yield {"instance": instance, "home": tmp / "home", "targets": targets, "repo": demo_repo, "env": env,
               "catalog": catalog, "planted": planted, "webhook": webhook, "tmp": tmp, "stack": stack,
               "monkeypatch": mp, "settings": settings, "argv": sampler}
    webhook.close()
    mp.undo()


def reconstructable(name: str):
    repo = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs",
                                                working_directory=str(REPO_ROOT))
    return repo.get_reconstructable_job(name)


def release(world, target: str, version: str, **config):
    service, environment = target.split(":")
    return execute_job(reconstructable(job("release", service, environment)), instance=world["instance"],
                       run_config={"ops": {"scan": {"config": {"version": version, **config}}}})


def reexecute(world, run_id: str, job_name: str):
    return execute_job(reconstructable(job_name), instance=world["instance"],
                       reexecution_options=ReexecutionOptions.from_failure(run_id, world["instance"]))


def run_job(world, job_name: str, run_config: dict | None = None):
    return execute_job(reconstructable(job_name), instance=world["instance"], run_config=run_config or {})


def users(world, target: str, concurrency: int = 2) -> LoadGenerator:
    """Users of a target (the verify rules need traffic: with none they are inconclusive)."""
    return LoadGenerator(f"http://127.0.0.1:{world['targets'][target]['port']}/api/items", concurrency=concurrency)


@pytest.fixture(scope="session")
def app_release(rel_world):
    """app v1.0.0 released in `rel`: the one real build of the session (with the build secret)."""
    with users(rel_world, "app:rel"):
        result = release(rel_world, "app:rel", "v1.0.0")
    return result


def derive_image(registry: str, repository: str, source_tag: str, tag: str, env: dict[str, str] | None = None) -> str:
    """Push repository:tag: the image source_tag with its version label set to tag (and `env` added
    to its environment): a distinct image (own config, own digest) sharing every layer."""
    base = f"http://{registry}/v2/{repository}"
    got = httpx.get(f"{base}/manifests/{source_tag}", headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=30)
    got.raise_for_status()
    manifest, media_type = got.json(), got.headers["content-type"]
    config = httpx.get(f"{base}/blobs/{manifest['config']['digest']}", timeout=30).json()
    inner = config.setdefault("config", {})
    inner.setdefault("Labels", {})["org.opencontainers.image.version"] = tag
    inner["Env"] = [*(inner.get("Env") or []), *(f"{k}={v}" for k, v in (env or {}).items())]
    blob = json.dumps(config).encode()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    upload = httpx.post(f"{base}/blobs/uploads/", timeout=30)
    upload.raise_for_status()
    location = upload.headers["location"]
    location = location if location.startswith("http") else f"http://{registry}{location}"
    # Appended by hand: httpx's params= would replace the upload URL's own _state query.
    httpx.put(f"{location}{'&' if '?' in location else '?'}digest={digest}", content=blob,
              headers={"Content-Type": "application/octet-stream"}, timeout=30).raise_for_status()
    manifest["config"] = {**manifest["config"], "digest": digest, "size": len(blob)}
    httpx.put(f"{base}/manifests/{tag}", content=json.dumps(manifest).encode(), headers={"Content-Type": media_type},
              timeout=30).raise_for_status()
    return digest


@pytest.fixture(scope="session")
def fleet_images(rel_world, app_release):
    """publish(version, env=None): fleet's image of `version`, derived from app's v1.0.0 build."""
    assert app_release.success, "app v1.0.0 (the session's one build) failed"
    registry = rel_world["env"]["DEPLOY_REGISTRY"]

    def publish(version: str, env: dict[str, str] | None = None) -> None:
        if version != "v1.0.0":                  # v1.0.0 is app's own build, shared as it is
            derive_image(registry, REPOSITORY, "v1.0.0", version, env)
    return publish
