"""A real Prometheus (1 s scrapes) and a prometheus_client exporter in the test process whose
values the tests set: the metric source for analysis and watch tests. Stopped by PID."""

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import pytest


@dataclass
class Exporter:
    gauge: object          # app_error_ratio{service,environment,version}
    latency: object        # app_latency_seconds histogram {service,environment,version}
    port: int


def wait_scraped(metrics, query: str, timeout: float = 30) -> None:
    """Until Prometheus has a sample for the query."""
    from deploy_pipelines.stack.process import wait_for

    wait_for(lambda: metrics.query(query) is not None, timeout, f"Prometheus to scrape {query}", interval=0.5)


@contextmanager
def reporting(exporter: Exporter, metrics, version: str, error_ratio: float, latency_s: float | None = None):
    """The exporter reports `version` of service svc/test: this error ratio and, with latency_s,
    a stream of requests taking that long; returns once Prometheus has scraped it."""
    exporter.gauge.labels("svc", "test", version).set(error_ratio)
    stop = threading.Event()
    if latency_s is not None:
        h = exporter.latency.labels("svc", "test", version)

        def feed():
            while not stop.is_set():
                h.observe(latency_s)
                time.sleep(0.01)

        threading.Thread(target=feed, daemon=True).start()
    try:
        wait_scraped(metrics, f'app_error_ratio{{version="{version}"}}')
        yield
    finally:
        stop.set()


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
    wait_scraped(PrometheusMetrics(url=prometheus.url), 'app_error_ratio{service="probe"}')
    yield Exporter(gauge, latency, port)
    server.shutdown()
