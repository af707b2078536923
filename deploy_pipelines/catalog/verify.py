"""The catalog's verify settings: `services.<name>.verify` (health, smoke checks, metric rules from
Prometheus or CloudWatch, and Argo-style analysis). Wired into models.py as `Service.verify`;
re-exported there, so `catalog.models.Rule` keeps working."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from deploy_pipelines.catalog.models import Duration, Strict

class HealthCheck(Strict):
    path: str = Field("/health", pattern=r"^/")
    readiness: str | None = Field(None, pattern=r"^/")   # ready for traffic (default: path)
    liveness: str | None = Field(None, pattern=r"^/")    # alive (restart when failing), where the platform has it
    timeout: Duration = 30.0
    interval: Duration = 5.0


class SmokeCheck(Strict):
    path: str = Field(pattern=r"^/")
    method: Literal["GET", "HEAD", "POST"] = "GET"
    expect: int = Field(200, ge=100, le=599)
    contains: str | None = None


class CloudWatchMetric(Strict):
    """One CloudWatch metric statistic (GetMetricData MetricStat)."""

    namespace: str = Field(min_length=1)          # AWS/ApplicationELB, Morrow/API
    metric: str = Field(min_length=1)             # TargetResponseTime, HTTPCode_Target_5XX_Count
    dimensions: dict[str, str] = {}               # values may hold {service} {environment} {version}
    stat: str = Field("Average", pattern=r"^(Average|Sum|Minimum|Maximum|SampleCount|p(100|\d{1,2}(\.\d+)?))$")
    period: Duration = 60.0                       # 1, 5, 10, 30 s (high-resolution metrics) or n x 60 s
    unit: str | None = None

    @field_validator("period")
    @classmethod
    def _cloudwatch_period(cls, v):
        if v not in (1, 5, 10, 30) and (v < 60 or v % 60):
            raise ValueError(f"CloudWatch periods are 1, 5, 10, 30 s or a multiple of 60 s (got {v:g}s)")
        return v


class CloudWatchQuery(CloudWatchMetric):
    """A rule's value from CloudWatch: the metric, or its ratio to another per period (error rate =
    HTTPCode_Target_5XX_Count Sum / RequestCount Sum), divided here rather than by metric math."""

    divided_by: CloudWatchMetric | None = None


def cloudwatch_rule(data: Any) -> Any:
    """`cloudwatch: {...}` or `alarm: NAME` instead of a PromQL query: encoded into `query` (what
    the metrics source receives); an alarm rule breaches while the alarm is in ALARM."""
    if not isinstance(data, dict) or not ({"cloudwatch", "alarm"} & data.keys()):
        return data
    if len({"query", "cloudwatch", "alarm"} & data.keys()) > 1:
        raise ValueError("write exactly one of query (PromQL), cloudwatch (a metric) or alarm (an alarm name)")
    if "alarm" in data:
        bound = {} if "min" in data or "max" in data else {"max": 0}
        return {"for": 0, **bound, **data, "query": f"cloudwatch-alarm:{data['alarm']}"}
    metric = CloudWatchQuery.model_validate(data["cloudwatch"])
    return {**data, "query": "cloudwatch:" + metric.model_dump_json(exclude_none=True)}


class Rule(Strict):
    """Prometheus-alert semantics: a breach counts when it holds for the whole `for` window."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    query: str = Field(min_length=1)              # PromQL; {service} {environment} {version} are filled in
    cloudwatch: CloudWatchQuery | None = None     # instead of query: a CloudWatch metric
    alarm: str | None = None                      # instead of query: a CloudWatch alarm (ALARM = breach)
    max: float | None = None
    min: float | None = None
    for_: Duration = Field(60.0, alias="for")
    dry_run: bool = False                         # evaluated and reported, never aborts

    _cloudwatch = model_validator(mode="before")(cloudwatch_rule)

    @model_validator(mode="after")
    def _one_bound(self):
        if (self.max is None) == (self.min is None):
            raise ValueError(f"rule {self.name!r} needs exactly one of max or min")
        return self


class Analysis(Strict):
    """Argo Rollouts' analysis vocabulary."""

    initial_delay: Duration = 0.0                 # wait before the first measurement (first scrapes land)
    interval: Duration = 5.0
    count: int = Field(3, ge=1)
    failure_limit: int = Field(0, ge=0)
    inconclusive_limit: int = Field(0, ge=0)
    on_inconclusive: Literal["abort", "pause", "continue"] = "abort"
    pause_timeout: Duration = 600.0               # on_inconclusive: pause holds the step at most this long


class VerifySpec(Strict):
    health: HealthCheck = HealthCheck()
    smoke: list[SmokeCheck] = []
    rules: list[Rule] = []
    analysis: Analysis = Analysis()
    bake: Duration = 0.0                          # watch after promotion; a breach -> rollback
    # A query giving the requests that failed over the rollout ({service} {environment} {window} filled
    # in, window like "95s"): numeric metadata on every release and abort event, so the UI plots it.
    failed_requests: str | None = None

    @model_validator(mode="after")
    def _unique_rules(self):
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)} repeated")
        return self
