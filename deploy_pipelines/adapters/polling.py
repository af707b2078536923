"""One waiting loop for adapters that follow a cloud resource to a state (an RDS snapshot to
`available`, a deployment to COMPLETED): the clock and the sleep are injected, as dagster-k8s's
DagsterKubernetesClient takes its timer and sleeper, so tests run the loop on a fake clock."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class WaitTimedOut(RuntimeError):
    pass


def poll_until(probe: Callable[[], T | None], what: str, timeout: float, interval: float,
               sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
               on_wait: Callable[[float], None] | None = None) -> T:
    """probe() until it returns something other than None; WaitTimedOut after timeout seconds."""
    started = clock()
    while True:
        result = probe()
        if result is not None:
            return result
        waited = clock() - started
        if waited >= timeout:
            raise WaitTimedOut(f"{what}: not reached after {waited:.0f}s (timeout {timeout:.0f}s)")
        if on_wait:
            on_wait(waited)
        sleep(interval)
