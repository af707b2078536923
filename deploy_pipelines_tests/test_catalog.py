"""The catalog loader: the demo catalog loads; each kind of mistake fails at load with the file,
the line, the field path and the service/environment it lies in; secrets never echo back.
Not covered here: what the jobs do with a valid catalog (test_definitions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy_pipelines.catalog import CatalogError, load_catalog, parse_catalog
from deploy_pipelines.catalog.models import Canary

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "deploy.yaml"

GOOD = {
    "project": "shop",
    "environments": {
        "staging": {"docker": {"host": "unix:///run/podman.sock"},
                    "registry": "127.0.0.1:5000", "prometheus": "http://127.0.0.1:9090",
                    "backup_root": "file:///var/backups"},
        "production": {"requires": "staging", "approval": "manual",
                       "docker": {"host": "unix:///run/podman.sock"},
                       "registry": "127.0.0.1:5000", "prometheus": "http://127.0.0.1:9090",
                       "backup_root": "file:///var/backups"},
    },
    "services": {
        "api": {
            "repo": "/srv/git/api.git",
            "image": {"repository": "shop/api"},
            "database": {"engine": "postgres", "url": {"env": "API_DATABASE_URL"}},
            "targets": {
                "staging": {"port": 8080, "strategy": "rolling"},
                "production": {"port": 8081, "replicas": 3, "strategy": {"canary": {"steps": [
                    {"setWeight": 10, "pause": "5m"}, {"setWeight": 25, "pause": "10m"},
                    {"setWeight": 50, "pause": "10m"}, {"setWeight": 100}]}}},
            },
            "verify": {"rules": [{"name": "error_rate", "query": "x", "max": 0.05, "for": "2m"}]},
        }
    },
}


def mutate(path: str, value, base=None) -> str:
    """GOOD with one field set (or deleted, value=...): dotted path, list indexes as numbers."""
    import copy

    doc = copy.deepcopy(base or GOOD)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    key = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return yaml.safe_dump(doc, sort_keys=False)


def problems_of(text: str) -> list[str]:
    with pytest.raises(CatalogError) as info:
        parse_catalog(text, Path("deploy.yaml"))
    assert str(info.value).startswith("deploy.yaml: invalid deploy catalog")
    return info.value.problems


def test_good_catalog_and_seed_canary_steps_load():
    catalog = parse_catalog(yaml.safe_dump(GOOD), Path("deploy.yaml"))
    strategy = catalog.services["api"].targets["production"].strategy
    assert isinstance(strategy, Canary)
    assert [(s.weight, s.pause) for s in strategy.steps] == [(10, 300), (25, 600), (50, 600), (100, None)]
    assert catalog.services["api"].verify.rules[0].for_ == 120
    assert catalog.environment_order() == ["staging", "production"]


def test_demo_catalog_loads():
    catalog = load_catalog(DEMO)
    assert set(catalog.services) == {"app", "shop", "web"}
    kinds = {name: s.targets["demo"].strategy.kind for name, s in catalog.services.items()}
    assert kinds == {"app": "rolling", "shop": "canary", "web": "blue_green"}


MISTAKES = [
    # (path, value, the field path the message must name, words it must contain)
    ("project", "Shop Inc", "project", "should match pattern"),
    ("timezone", "Mars/Base", "timezone", "unknown time zone"),
    ("environments.production.requires", "qa", "environments.production.requires", "unknown environment 'qa'"),
    ("environments.production.approval", "sometimes", "environments.production.approval", "'auto' or 'manual'"),
    ("services.api.image.repository", "Shop/API", "services.api.image.repository", "pattern"),
    ("services.api.database.engine", "oracle", "services.api.database.engine", "'postgres' or 'mysql'"),
    ("services.api.database.url", "postgres://u:hunter2@h/db", "services.api.database.url", "{env: NAME}"),
    ("services.api.targets.staging.port", 99999, "services.api.targets.staging.port", "65535"),
    ("services.api.targets.staging.strategy", "big-bang", "services.api.targets.staging.strategy", "unknown strategy"),
    ("services.api.targets.production.strategy.canary.steps.1.setWeight", 5,
     "services.api.targets.production.strategy.canary", "only go up"),
    ("services.api.targets.production.strategy.canary.steps.0.pause", "5 minutes",
     "services.api.targets.production.strategy.canary.steps[0].pause", "not a duration"),
    ("services.api.targets.qa", {"port": 1}, "services.api.targets.qa", "unknown environment 'qa'"),
    ("services.api.verify.rules.0.min", 0.1, "services.api.verify.rules[0]", "exactly one of max or min"),
    ("services.api.verify.rules.0.for", "forever", "services.api.verify.rules[0].for", "not a duration"),
    ("services.api.verify.healthz", {}, "services.api.verify.healthz", "unknown field"),
    ("services.api.database.backup", {"schedule": "at two"}, "services.api.database.backup.schedule", "cron"),
    ("services.api.image", ..., "services.api.image", "missing"),
    ("services.api.targets.staging.replicas", 0, "services.api.targets.staging.replicas", "greater than or equal to 1"),
    ("services.api.owners", ["team:api", "the api team"], "services.api.owners", "neither an email address nor team:"),
    ("environments.staging.prometheus", ..., "services.api.verify.rules", "no prometheus"),
    ("services.api.targets.staging.strategy", {"rolling": {"max_surge": 0, "max_unavailable": 0}},
     "services.api.targets.staging.strategy.rolling", "never progress"),
]


@pytest.mark.parametrize("path,value,field,words", MISTAKES, ids=[m[0] + ("-del" if m[1] is ... else "") for m in MISTAKES])
def test_each_mistake_names_its_field(path, value, field, words):
    problems = problems_of(mutate(path, value))
    hit = [p for p in problems if field in p]
    assert hit, f"no problem names {field}: {problems}"
    assert any(words in p for p in hit), problems


def test_mistakes_name_service_environment_and_line():
    problems = problems_of(mutate("services.api.targets.staging.port", 99999))
    assert len(problems) == 1
    assert "[service api, environment staging]" in problems[0]
    line = int(problems[0].split(":")[0].removeprefix("line "))
    text = mutate("services.api.targets.staging.port", 99999)
    assert "99999" in text.splitlines()[line - 1]


def test_inline_secret_is_never_echoed():
    problems = problems_of(mutate("services.api.database.url", "postgres://u:hunter2@h/db"))
    assert not any("hunter2" in p for p in problems)


def test_several_mistakes_are_all_reported_at_once():
    text = mutate("timezone", "Mars/Base", base=yaml.safe_load(mutate("services.api.targets.staging.port", 0)))
    problems = problems_of(text)
    assert len(problems) == 2


def test_bad_yaml_and_missing_file_name_the_file(tmp_path):
    with pytest.raises(CatalogError, match=r"(?s)deploy.yaml.*line 2, column .*not valid YAML"):
        parse_catalog("project: a\n  bad: [", Path("deploy.yaml"))
    with pytest.raises(CatalogError, match="cannot read the catalog"):
        load_catalog(tmp_path / "nope.yaml")


@pytest.mark.parametrize("expr", ["0 2 * * *", "*/15 * * * 1-5", "0 3 1 * *", "at two", "61 * * * *",
                                  "* * * *", "0 0 30 2 *", "@daily"])
def test_cron_validation_agrees_with_dagster_schedules(expr):
    """What the catalog accepts as a cron, ScheduleDefinition accepts too (and the other way round):
    a disagreement would pass `check` and then fail the code location's load."""
    from dagster import ScheduleDefinition, job, op

    from deploy_pipelines.cron import is_valid

    @op
    def noop():
        pass

    @job
    def j():
        noop()

    try:
        ScheduleDefinition(job=j, cron_schedule=expr)
        dagster_ok = True
    except Exception:  # noqa: BLE001 - DagsterInvalidDefinitionError / CheckError
        dagster_ok = False
    assert is_valid(expr) == dagster_ok
