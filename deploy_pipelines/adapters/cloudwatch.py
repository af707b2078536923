"""CloudWatch as a metrics source for verify rules and the bake watch.

A rule written `cloudwatch: {namespace, metric, dimensions, stat, period}` (optionally
`divided_by` another metric) arrives here as its encoded query: GetMetricData with MetricStat
queries, one value per period; a ratio is divided per period here (the same numbers metric math
would give). A rule written `alarm: NAME` reads the alarm's state: ALARM = 1 (breach of the
implied `max: 0`), OK = 0, INSUFFICIENT_DATA = no data (inconclusive).

Percentile stats (p99) are passed to CloudWatch as they are; the moto server cannot compute them
(it answers no values), so they are checked on AWS only.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import PrivateAttr

from deploy_pipelines.adapters.metrics import MetricsSource, MetricsUnavailable
from deploy_pipelines.catalog.models import CloudWatchMetric, CloudWatchQuery

METRIC, ALARM = "cloudwatch:", "cloudwatch-alarm:"
ALARM_VALUE = {"ALARM": 1.0, "OK": 0.0}


def metric_stat(m: CloudWatchMetric) -> dict:
    stat: dict[str, Any] = {
        "Metric": {"Namespace": m.namespace, "MetricName": m.metric,
                   "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(m.dimensions.items())]},
        "Period": int(m.period), "Stat": m.stat}
    if m.unit:
        stat["Unit"] = m.unit
    return stat


def metric_data_queries(q: CloudWatchQuery) -> list[dict]:
    queries = [{"Id": "value", "MetricStat": metric_stat(q), "ReturnData": True}]
    if q.divided_by is not None:
        queries.append({"Id": "divisor", "MetricStat": metric_stat(q.divided_by), "ReturnData": True})
    return queries


class CloudWatchMetrics(MetricsSource):
    """Amazon CloudWatch (or the moto server: endpoint_url / AWS_ENDPOINT_URL)."""

    region_name: str | None = None
    endpoint_url: str | None = None
    profile_name: str | None = None
    _client_cache: Any = PrivateAttr(default=None)

    def _client(self):
        if self._client_cache is None:
            import boto3

            session = boto3.session.Session(profile_name=self.profile_name)
            self._client_cache = session.client("cloudwatch", region_name=self.region_name,
                                                endpoint_url=self.endpoint_url)
        return self._client_cache

    def _call(self, what: str, fn, **kwargs) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise MetricsUnavailable(f"CloudWatch {what} failed: {exc}") from exc

    def query_range(self, query: str, start: float, end: float, step: float) -> list[tuple[float, float]]:
        if query.startswith(ALARM):
            return self._alarm(query.removeprefix(ALARM), end)
        if not query.startswith(METRIC):
            raise MetricsUnavailable(f"not a CloudWatch rule (write cloudwatch: or alarm:): {query[:80]}")
        q = CloudWatchQuery.model_validate_json(query.removeprefix(METRIC))
        # Whole periods only: a period still filling would read as a dip in a rate.
        start = max(start, end - 1440 * q.period)            # GetMetricData's 1,440-points-per-query bound
        if end - start < q.period:
            start = end - q.period
        series: dict[str, dict[float, float]] = {"value": {}, "divisor": {}}
        token = None
        while True:
            kwargs = {"MetricDataQueries": metric_data_queries(q), "ScanBy": "TimestampAscending",
                      "StartTime": datetime.fromtimestamp(start, timezone.utc),
                      "EndTime": datetime.fromtimestamp(end, timezone.utc)}
            if token:
                kwargs["NextToken"] = token
            page = self._call("GetMetricData", self._client().get_metric_data, **kwargs)
            for result in page["MetricDataResults"]:
                for ts, value in zip(result.get("Timestamps", []), result.get("Values", [])):
                    if value is not None:
                        series[result["Id"]][ts.timestamp()] = float(value)
            token = page.get("NextToken")
            if not token:
                break
        if q.divided_by is None:
            return sorted(series["value"].items())
        # A period without requests has no rate (no data), not a rate of 0.
        return sorted((ts, series["value"].get(ts, 0.0) / d) for ts, d in series["divisor"].items() if d > 0)

    def _alarm(self, name: str, now: float) -> list[tuple[float, float]]:
        alarms = self._call("DescribeAlarms", self._client().describe_alarms, AlarmNames=[name])["MetricAlarms"]
        if not alarms:
            raise MetricsUnavailable(f"CloudWatch has no alarm named {name!r}")
        value = ALARM_VALUE.get(alarms[0]["StateValue"])
        return [] if value is None else [(now, value)]

    def query(self, query: str) -> float | None:
        import time

        now = time.time()
        samples = self.query_range(query, now - 600, now, 60)
        return samples[-1][1] if samples else None
