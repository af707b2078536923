"""Rules across fields of a valid-shaped catalog: what pydantic's per-field checks cannot see.

Each rule returns (field path, message); the loader adds the line and the service/environment.
These run wherever the catalog is loaded (`deploy-pipelines check`, the code location, a run),
so what `check` accepts, the code location loads.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from deploy_pipelines.catalog.aws import ecs_problems
from deploy_pipelines.catalog.kubernetes import kubernetes_problems
from deploy_pipelines.catalog.models import Catalog, EnvRef
from deploy_pipelines.redact import is_secret_name

Problem = tuple[tuple, str]

# Platforms the models name but no adapter implements yet: reject them here, not in a traceback.
PLATFORMS_WITH_ADAPTER = {"docker", "kubernetes", "ecs"}

URL_WITH_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")
LOOKS_LIKE_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*_[A-Z0-9_]+$")


def _cycle(catalog: Catalog) -> list[Problem]:
    problems = []
    for start in catalog.environments:
        seen = [start]
        name = catalog.environments[start].requires
        while name and name in catalog.environments:
            if name == start:
                if len(seen) > 1 and start == min(seen):       # report each cycle once
                    chain = " -> ".join([*seen, start])
                    problems.append((("environments", start, "requires"),
                                     f"requires forms a cycle ({chain}): no environment could be released first"))
                break
            if name in seen:
                break
            seen.append(name)
            name = catalog.environments[name].requires
    return problems


def _platforms(catalog: Catalog) -> list[Problem]:
    return [(("services", s, "targets", e, "platform"),
             f"platform {t.platform} has no adapter yet in this version of deploy_pipelines "
             f"(supported: {', '.join(sorted(PLATFORMS_WITH_ADAPTER))})")
            for s, svc in catalog.services.items() for e, t in svc.targets.items()
            if t.platform not in PLATFORMS_WITH_ADAPTER]


def _names(catalog: Catalog) -> list[Problem]:
    """Every job, sensor and schedule of a target is named <kind>_<service>_<environment> (tags_ and
    branch_ sensors <kind>_<service>), and Dagster needs the names unique. Names are joined with
    '_', so service web in a_staging and service web_a in staging would make the same names."""
    owners: dict[str, tuple] = {}
    problems = []
    for s, svc in catalog.services.items():
        for e in svc.targets:
            where = ("services", s, "targets", e)
            joined = f"{s}_{e}"
            if joined in owners:
                problems.append((where, f"{'.'.join(owners[joined])} and this target would both make the job "
                                        f"release_{joined} (and its rollback, backup, patch, sensors and "
                                        "schedules): rename a service or environment"))
            else:
                owners[joined] = where
    return problems


def _ports(catalog: Catalog) -> list[Problem]:
    """One nginx listener per port per Docker host: two targets on one port would share traffic."""
    owners: dict[tuple, tuple] = {}
    problems = []
    for s, svc in catalog.services.items():
        for e, t in svc.targets.items():
            env = catalog.environments.get(e)
            if env is None or env.docker is None or t.platform != "docker":
                continue
            key = (repr(env.docker.host), repr(t.port))
            where = ("services", s, "targets", e, "port")
            if key in owners:
                port = t.port.env if isinstance(t.port, EnvRef) else t.port
                problems.append((where, f"port {port} on this Docker host is already the listener of "
                                        f"{'.'.join(owners[key][:4])}: give each target its own port"))
            else:
                owners[key] = where
    return problems


def _secrets(catalog: Catalog) -> list[Problem]:
    problems = []

    def literal(loc: tuple, name: str, value) -> None:
        if isinstance(value, EnvRef) or not isinstance(value, str):
            return
        if is_secret_name(name) and value:
            problems.append((loc, f"{name} looks like a secret: write it as {{env: NAME}}, never inline"))
        elif URL_WITH_PASSWORD.match(value):
            problems.append((loc, "this URL holds a password: write it as {env: NAME}, never inline"))

    for s, svc in catalog.services.items():
        literal(("services", s, "repo"), "repo", svc.repo)
        for k, v in svc.image.build_args.items():
            literal(("services", s, "image", "build_args", k), k, v)
        for e, t in svc.targets.items():
            for k, v in t.env.items():
                literal(("services", s, "targets", e, "env", k), k, v)
    for e, env in catalog.environments.items():
        for field in ("prometheus", "registry", "backup_root"):
            literal(("environments", e, field), field, getattr(env, field))
    return problems


def _forgotten_env(catalog: Catalog) -> list[Problem]:
    """`host: DOCKER_HOST` is almost surely a forgotten {env: DOCKER_HOST}."""
    places: list[tuple[tuple, object]] = []
    for e, env in catalog.environments.items():
        for field in ("prometheus", "registry", "backup_root"):
            places.append((("environments", e, field), getattr(env, field)))
        if env.docker:
            for field in ("host", "nginx_prefix", "prometheus_targets"):
                places.append((("environments", e, "docker", field), getattr(env.docker, field)))
    for s, svc in catalog.services.items():
        places.append((("services", s, "repo"), svc.repo))
        places.append((("services", s, "image", "registry"), svc.image.registry))
    return [(loc, f"{value!r} looks like an environment variable name: write {{env: {value}}}")
            for loc, value in places if isinstance(value, str) and LOOKS_LIKE_ENV_NAME.match(value)]


def _urls(catalog: Catalog) -> list[Problem]:
    def http(loc: tuple, value) -> list[Problem]:
        if not isinstance(value, str):
            return []
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return [(loc, f"{value!r} is not an http(s) URL (e.g. http://127.0.0.1:9090)")]
        return []

    problems = http(("notify", "ui_url"), catalog.notify.ui_url)
    for e, env in catalog.environments.items():
        problems += http(("environments", e, "prometheus"), env.prometheus)
        if env.docker and isinstance(env.docker.host, str) and \
                urlsplit(env.docker.host).scheme not in ("unix", "ssh", "tcp"):
            problems.append((("environments", e, "docker", "host"),
                             f"{env.docker.host!r} is not a Docker Engine address (unix:///path, ssh://user@host "
                             "or tcp://host:port)"))
        for field in ("backup_root",):
            value = getattr(env, field)
            if isinstance(value, str) and not (value.startswith(("file:///", "s3://", "/"))):
                problems.append((("environments", e, field),
                                 f"{value!r} is not a backup location (file:///path, /path or s3://bucket/prefix)"))
    return problems


def _tag_patterns(catalog: Catalog) -> list[Problem]:
    return [(("services", s, "tag_pattern"), f"{svc.tag_pattern!r} does not match the release tag v1.2.3: "
                                             "no release could ever be found")
            for s, svc in catalog.services.items() if not re.match(svc.tag_pattern, "v1.2.3")]


RULES = (_platforms, kubernetes_problems, _cycle, _names, _ports, _secrets, _forgotten_env, _urls, _tag_patterns,
         ecs_problems)


def cross_field_problems(catalog: Catalog) -> list[Problem]:
    return [p for rule in RULES for p in rule(catalog)]
