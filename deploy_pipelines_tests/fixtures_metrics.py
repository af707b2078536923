"""A real Prometheus (1 s scrapes) and a prometheus_client exporter in the test process whose
values the tests set: the metric source for analysis and watch tests. Stopped by PID."""

import json
import time
from dataclasses import dataclass

import pytest


@dataclass
class Exporter:
    gauge: object          # app_error_ratio{service,environment,version}
    latency: object        # app_latency_seconds histogram {service,environment,version}
    port: int


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory):
    from deploy_pipelines.stack.prometheus import PrometheusServer

    server = PrometheusServer.start(tmp_path_factory.mktemp("prom"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def exporter(prometheus):
    from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

    from deploy_pipelines.adapters.metrics import PrometheusMetrics
    from deploy_pipelines.stack.process import free_port

    registry = CollectorRegistry()
    labels = ["service", "environment", "version"]
    gauge = Gauge("app_error_ratio", "share of failed requests", labels, registry=registry)
    latency = Histogram("app_latency_seconds", "request latency", labels, registry=registry,
                        buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
    gauge.labels("probe", "probe", "probe").set(1)
    port = free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    (prometheus.targets_dir / "exporter.json").write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"]}]))
    # file_sd discovery of a new target takes a few seconds on a fresh Prometheus.
    metrics = PrometheusMetrics(url=prometheus.url)
    deadline = time.monotonic() + 30
    while metrics.query('app_error_ratio{service="probe"}') is None:
        assert time.monotonic() < deadline, "Prometheus never scraped the exporter"
        time.sleep(0.5)
    yield Exporter(gauge, latency, port)
    server.shutdown()
