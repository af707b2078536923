"""Metrics sources for verification rules: the base, and Prometheus over its HTTP API."""

from __future__ import annotations

from abc import ABC, abstractmethod

import httpx
from dagster import ConfigurableResource


class MetricsUnavailable(RuntimeError):
    """The metrics source could not be asked (down, bad query): an inconclusive measurement."""


class MetricsSource(ConfigurableResource, ABC):
    @abstractmethod
    def query(self, promql: str) -> float | None:
        """The instant value of a query that yields one series (None: no data)."""

    @abstractmethod
    def query_range(self, promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        """(timestamp, value) samples of a one-series query over [start, end]."""


class PrometheusMetrics(MetricsSource):
    """A Prometheus server's /api/v1/query and /api/v1/query_range."""

    url: str
    timeout_seconds: float = 5.0

    def _get(self, path: str, params: dict) -> dict:
        try:
            resp = httpx.get(self.url.rstrip("/") + path, params=params, timeout=self.timeout_seconds)
        except httpx.HTTPError as exc:
            raise MetricsUnavailable(f"Prometheus at {self.url} did not answer: {exc}") from exc
        try:
            body = resp.json()
        except ValueError as exc:
            raise MetricsUnavailable(f"Prometheus at {self.url} answered HTTP {resp.status_code} without JSON") from exc
        if body.get("status") != "success":
            raise MetricsUnavailable(f"Prometheus rejected the query: {body.get('error', resp.text[:200])}")
        return body["data"]

    @staticmethod
    def _one_series(data: dict, promql: str) -> list:
        result = data.get("result", [])
        if data.get("resultType") == "scalar":
            return [result]
        if len(result) > 1:
            raise MetricsUnavailable(f"query returned {len(result)} series, expected one: {promql}")
        return result

    def query(self, promql: str) -> float | None:
        series = self._one_series(self._get("/api/v1/query", {"query": promql}), promql)
        if not series:
            return None
        value = series[0]["value"][1] if isinstance(series[0], dict) else series[0][1]
        v = float(value)
        return None if v != v else v   # NaN (0/0: no traffic) is no data

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        data = self._get("/api/v1/query_range", {"query": promql, "start": start, "end": end, "step": step})
        series = self._one_series(data, promql)
        if not series:
            return []
        out = []
        for ts, value in series[0]["values"]:
            v = float(value)
            if v == v:
                out.append((float(ts), v))
        return out
