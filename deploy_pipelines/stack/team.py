"""A team's Dagster instance on PostgreSQL: the project's dagster.yaml (one run per deploy/target,
quick run queue, threaded sensors) plus run, event-log and schedule storage on a PostgreSQL server.

SQLite (the embedded default) serialises writers: with a webserver, a daemon and several run
workers writing at once, runs queue behind each other's event writes. The Helm values
(k8s/values.yaml) already put production on PostgreSQL; this is the same for one machine.
The server's URL, password included, is read from $DAGSTER_PG_URL when the instance starts: it is
never written to the file.

Run: python -m deploy_pipelines.stack.team DAGSTER_HOME   (then DAGSTER_PG_URL=... dagster dev)"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from deploy_pipelines.stack.daemon import write_instance_yaml

PG_URL_ENV = "DAGSTER_PG_URL"


def dagster_storage_url(url: str) -> str:
    """A postgresql:// URL for Dagster's storage: SQLAlchemy 2.1 reads a bare postgresql:// as
    psycopg 3, which is not installed; dagster-postgres is built on psycopg2."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def write_team_instance_yaml(home: Path) -> Path:
    path = write_instance_yaml(Path(home))
    config = yaml.safe_load(path.read_text())
    config["storage"] = {"postgres": {"postgres_url": {"env": PG_URL_ENV}}}
    path.write_text("# Written by deploy_pipelines.stack.team: PostgreSQL storage for a team's instance.\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


if __name__ == "__main__":
    print(write_team_instance_yaml(Path(sys.argv[1])))
