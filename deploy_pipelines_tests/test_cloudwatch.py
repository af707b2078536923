"""CloudWatch as the metrics source of verify rules, against the moto server, with metrics that
come from real requests: a small loopback HTTP server plays two versions of a service (v1 healthy,
v2 answering every third request with HTTP 500), a load loop sends it real requests, and the test
bed puts what they did into CloudWatch with PutMetricData (one-second periods of ten requests
each: RequestCount, HTTPCode_Target_5XX_Count, TargetResponseTime), as an ALB would. Rules written
as Morrow writes them (error rate 1%, response time 200 ms) pass for v1 and fail for v2; an alarm
rule breaches while its alarm is in ALARM.
Not covered: alarm evaluation (moto never evaluates alarms; the test sets their state), percentile
values (moto computes none: a p99 rule is accepted and reads as no data), the verify op's wiring."""

from __future__ import annotations

import http.server
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone

import httpx
import pytest

from deploy_pipelines.adapters.cloudwatch import CloudWatchMetrics
from deploy_pipelines.analysis import FAILED, INCONCLUSIVE, SUCCESSFUL, measure
from deploy_pipelines.catalog.models import Rule
from deploy_pipelines.stack.process import free_port
from deploy_pipelines_tests.fixtures_aws import aws_env, moto_server  # noqa: F401

pytestmark = pytest.mark.aws

NS = "AWS/ApplicationELB"


def tg(version: str) -> dict:
    return {"TargetGroup": "targetgroup/{service}-" + version}


def morrow_rules(version: str) -> list[Rule]:
    """Morrow's thresholds (SEED_DIGEST: error rate > 1%, response time 200 ms), short windows."""
    return [
        Rule.model_validate({"name": "error_rate", "max": 0.01, "for": "3s", "cloudwatch": {
            "namespace": NS, "metric": "HTTPCode_Target_5XX_Count", "stat": "Sum", "period": 1,
            "dimensions": tg(version),
            "divided_by": {"namespace": NS, "metric": "RequestCount", "stat": "Sum", "period": 1,
                           "dimensions": tg(version)}}}),
        Rule.model_validate({"name": "response_time", "max": 0.2, "for": "3s", "cloudwatch": {
            "namespace": NS, "metric": "TargetResponseTime", "stat": "Average", "period": 1,
            "dimensions": tg(version)}}),
    ]


class App(http.server.BaseHTTPRequestHandler):
    """/v1/... always 200; /v2/... HTTP 500 for every third request."""

    counter = defaultdict(int)

    def do_GET(self):
        version = self.path.split("/")[1]
        App.counter[version] += 1
        status = 500 if version == "v2" and App.counter[version] % 3 == 0 else 200
        time.sleep(0.01)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def serve_and_report(app: str, version: str, periods: int = 4, per_period: int = 10) -> float:
    """periods x per_period real requests, then their metrics into CloudWatch as `periods`
    one-second periods ending at the last whole second (per_period requests in each, in the order
    sent: on a loaded machine a wall-clock second may hold too few requests to judge); returns
    the end of the last period."""
    import boto3

    answered: list[tuple[int, float]] = []
    with httpx.Client() as client:
        for _ in range(periods * per_period):
            sent = time.monotonic()
            status = client.get(f"{app}/{version}/api/items").status_code
            answered.append((status, time.monotonic() - sent))
    cloudwatch = boto3.client("cloudwatch")
    dims = [{"Name": "TargetGroup", "Value": f"targetgroup/svc-{version}"}]
    first = int(time.time()) - periods
    for i in range(periods):
        reqs = answered[i * per_period:(i + 1) * per_period]
        ts = datetime.fromtimestamp(first + i, timezone.utc)
        data = [("RequestCount", len(reqs), "Count"), ("HTTPCode_Target_5XX_Count", sum(s >= 500 for s, _ in reqs), "Count")]
        cloudwatch.put_metric_data(Namespace=NS, MetricData=[
            *({"MetricName": n, "Dimensions": dims, "Timestamp": ts, "Value": float(v), "Unit": u,
               "StorageResolution": 1} for n, v, u in data),
            {"MetricName": "TargetResponseTime", "Dimensions": dims, "Timestamp": ts, "Unit": "Seconds",
             "StorageResolution": 1, "Values": [lat for _, lat in reqs], "Counts": [1.0] * len(reqs)}])
    return float(first + periods)


def test_rules_pass_for_a_healthy_version_and_fail_for_a_faulty_one(aws_env, app):  # noqa: F811
    metrics = CloudWatchMetrics()
    labels = {"service": "svc", "environment": "production"}
    results = {}
    for version in ("v1", "v2"):
        end = serve_and_report(app, version)
        results[version] = {r.name: measure(r, metrics, {**labels, "version": version}, now=end)
                            for r in morrow_rules(version)}
    v1, v2 = results["v1"], results["v2"]
    seen = {v: [m.narrate() for m in r.values()] for v, r in results.items()}
    assert v1["error_rate"].result == SUCCESSFUL and v1["error_rate"].value == 0.0, seen
    assert v1["response_time"].result == SUCCESSFUL and 0.005 < v1["response_time"].value < 0.2, seen
    assert v2["error_rate"].result == FAILED, seen
    assert 0.3 <= v2["error_rate"].value <= 0.4, seen                   # 3 or 4 of each period's 10
    assert v2["response_time"].result == SUCCESSFUL, seen


def test_alarm_rule_breaches_while_the_alarm_is_in_alarm(aws_env):  # noqa: F811
    import boto3

    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(AlarmName="morrow-api-5xx", Namespace=NS, MetricName="HTTPCode_Target_5XX_Count",
                                Statistic="Sum", Period=60, EvaluationPeriods=5, Threshold=1.0,
                                ComparisonOperator="GreaterThanThreshold")
    rule = Rule.model_validate({"name": "alb_5xx_alarm", "alarm": "morrow-api-5xx"})
    metrics = CloudWatchMetrics()
    labels = {"service": "svc", "environment": "production", "version": "v2"}
    cloudwatch.set_alarm_state(AlarmName="morrow-api-5xx", StateValue="INSUFFICIENT_DATA", StateReason="no data")
    assert measure(rule, metrics, labels).result == INCONCLUSIVE
    cloudwatch.set_alarm_state(AlarmName="morrow-api-5xx", StateValue="ALARM", StateReason="5xx > 1 for 5 min")
    breached = measure(rule, metrics, labels)
    assert breached.result == FAILED and breached.value == 1.0
    cloudwatch.set_alarm_state(AlarmName="morrow-api-5xx", StateValue="OK", StateReason="recovered")
    assert measure(rule, metrics, labels).result == SUCCESSFUL
    missing = Rule.model_validate({"name": "gone", "alarm": "no-such-alarm"})
    assert "no alarm named" in measure(missing, metrics, labels).detail


def test_p99_is_sent_as_a_percentile_stat(aws_env):  # noqa: F811
    rule = Rule.model_validate({"name": "p99_latency_s", "max": 0.5, "for": "5m", "cloudwatch": {
        "namespace": NS, "metric": "TargetResponseTime", "stat": "p99", "period": 60, "dimensions": tg("v1")}})
    m = measure(rule, CloudWatchMetrics(), {"service": "svc", "environment": "production", "version": "v1"})
    assert m.result == INCONCLUSIVE                                     # moto computes no percentiles


def test_catalog_cloudwatch_rules_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exactly one of query"):
        Rule.model_validate({"name": "x", "query": "up", "alarm": "a"})
    with pytest.raises(ValidationError, match="periods are 1, 5, 10, 30 s"):
        Rule.model_validate({"name": "x", "max": 1, "cloudwatch": {"namespace": "n", "metric": "m", "period": 45}})
    with pytest.raises(ValidationError, match="stat"):
        Rule.model_validate({"name": "x", "max": 1, "cloudwatch": {"namespace": "n", "metric": "m", "stat": "median"}})
