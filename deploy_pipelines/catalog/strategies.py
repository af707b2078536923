"""The catalog's release strategies: `targets.<env>.strategy` is `rolling`, `blue_green` or
`{canary: {steps: [...]}}`, in Argo Rollouts' words (setWeight, pause, analysis). Wired into
models.py as `Target.strategy`; re-exported there, so `catalog.models.Canary` keeps working."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from deploy_pipelines.catalog.models import Duration, Strict

class Rolling(Strict):
    kind: Literal["rolling"] = "rolling"
    max_surge: int = Field(1, ge=0)
    max_unavailable: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _progress(self):
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("max_surge and max_unavailable cannot both be 0: the rollout could never progress")
        return self


class BlueGreen(Strict):
    kind: Literal["blue_green"] = "blue_green"
    keep_previous: Duration = 600.0               # blue stays warm this long after the switch


class CanaryStep(Strict):
    weight: int | None = Field(None, ge=0, le=100, alias="setWeight")
    pause: Duration | None = None
    analysis: bool = True                         # run the verify rules during/after this step

    @model_validator(mode="after")
    def _something(self):
        if self.weight is None and self.pause is None:
            raise ValueError("a canary step needs a weight (setWeight) and/or a pause")
        return self


class Canary(Strict):
    kind: Literal["canary"] = "canary"
    steps: list[CanaryStep] = Field(min_length=1)
    canary_replicas: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _increasing(self):
        last = 0
        for i, step in enumerate(self.steps):
            if step.weight is None:
                continue
            if step.weight < last:
                raise ValueError(f"steps[{i}].weight {step.weight} is below the previous step's {last}: "
                                 "canary weights only go up")
            last = step.weight
        return self


def _strategy(value: Any) -> Any:
    """`rolling` | `{rolling: {...}}` | `{blue_green: {...}}` | `{canary: {steps: [...]}}`."""
    if isinstance(value, str):
        value = value.replace("-", "_")
        if value not in ("rolling", "blue_green"):
            raise ValueError(f"unknown strategy {value!r}: rolling, blue_green or canary")
        return {"kind": value}
    if isinstance(value, dict) and "kind" not in value:
        if len(value) != 1:
            raise ValueError("write exactly one strategy: {rolling: {...}}, {blue_green: {...}} or {canary: {steps: [...]}}")
        (kind, body), = value.items()
        kind = str(kind).replace("-", "_")
        if kind not in ("rolling", "blue_green", "canary"):
            raise ValueError(f"unknown strategy {kind!r}: rolling, blue_green or canary")
        if body is not None and not isinstance(body, dict):
            example = "{canary: {steps: [{setWeight: 10, pause: 5m}, ...]}}" if kind == "canary" else \
                f"{kind} or {{{kind}: {{...}}}}"
            got = "a list" if isinstance(body, list) else repr(body)[:40]
            raise ValueError(f"{kind} takes a mapping of its settings, not {got}: write {example}")
        return {"kind": kind, **(body or {})}
    return value


Strategy = Annotated[Rolling | BlueGreen | Canary, Field(discriminator="kind"), BeforeValidator(_strategy)]
