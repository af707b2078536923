"""Catalog settings as resource fields: `{env: NAME}` becomes a Dagster EnvVar (the run config and
the UI show the variable's name, never its value), literals pass through. Its own module so both
resources.py and the adapters' wiring modules it imports (k8s_resources.py) can use it."""

from __future__ import annotations

from dagster import EnvVar

from deploy_pipelines.catalog.models import EnvRef


def setting(value):
    """A catalog setting as a resource field: {env: NAME} -> EnvVar(NAME), literals as they are."""
    if isinstance(value, EnvRef):
        return EnvVar(value.env)
    return value


def int_setting(value):
    """An integer setting (a port): {env: NAME} -> EnvVar.int(NAME), numbers as they are."""
    if isinstance(value, EnvRef):
        return EnvVar.int(value.env)
    return value
