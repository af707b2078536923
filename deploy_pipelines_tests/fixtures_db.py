"""A PostgreSQL and a MariaDB server per test session, in temp folders, stopped by PID."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    from deploy_pipelines.stack.postgres import PostgresServer

    server = PostgresServer.start(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory):
    from deploy_pipelines.stack.mariadb import MariaDBServer

    server = MariaDBServer.start(tmp_path_factory.mktemp("mariadb"))
    yield server
    server.stop()
