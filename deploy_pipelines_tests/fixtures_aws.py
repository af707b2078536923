"""The moto server for the AWS APIs, one per test session on a free 127.0.0.1 port, stopped by
PID; `aws_env` points boto3 (and dagster-aws resources) at it with dummy credentials set only
for the test that asks for it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    from deploy_pipelines.stack.moto import MotoServer

    server = MotoServer.start(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def aws_env(moto_server, monkeypatch):
    """The test's process environment talks to the moto server only: no profile, no real keys."""
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    return moto_server
