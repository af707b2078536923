"""A loopback load generator: the "users" of tests, benchmarks and the demo. Threads send requests
to one URL and record, per request, when it was sent, its status (or the transport error) and
which version answered (the X-App-Version header)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class Sample:
    t: float                 # time.time() when sent
    status: int | None       # None: the request failed (connection refused/reset, timeout)
    version: str | None
    error: str = ""
    latency: float = 0.0     # seconds until the answer (or the error)


@dataclass
class Summary:
    total: int
    failed: int              # transport failures: the request got no HTTP answer at all
    http_errors: int         # HTTP 5xx answers
    by_version: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0

    def share(self, version: str) -> float:
        answered = sum(self.by_version.values())
        return self.by_version.get(version, 0) / answered if answered else 0.0


class LoadGenerator:
    """`concurrency` threads, each sending requests back to back (or `rate` per second in all)."""

    def __init__(self, url: str, concurrency: int = 4, timeout: float = 10.0, keepalive: bool = False,
                 limit: int | None = None):
        self.url = url
        self.concurrency = concurrency
        self.timeout = timeout
        self.keepalive = keepalive
        self.limit = limit
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = self._ended = 0.0

    def _worker(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if self.keepalive else 0)
        headers = {} if self.keepalive else {"Connection": "close"}
        with httpx.Client(timeout=self.timeout, limits=limits, headers=headers) as client:
            while not self._stop.is_set():
                t = time.time()
                try:
                    r = client.get(self.url)
                    sample = Sample(t, r.status_code, r.headers.get("x-app-version"), "", time.time() - t)
                except httpx.HTTPError as exc:
                    sample = Sample(t, None, None, type(exc).__name__, time.time() - t)
                with self._lock:
                    self.samples.append(sample)
                    if self.limit and len(self.samples) >= self.limit:
                        self._stop.set()

    def start(self) -> "LoadGenerator":
        self._started = time.time()
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.concurrency)]
        for th in self._threads:
            th.start()
        return self

    def stop(self) -> Summary:
        self._stop.set()
        for th in self._threads:
            th.join(timeout=self.timeout + 5)
        self._ended = time.time()
        return self.summary()

    def wait(self) -> Summary:
        for th in self._threads:
            th.join()
        self._ended = time.time()
        return self.summary()

    def summary(self, since: float | None = None, until: float | None = None) -> Summary:
        with self._lock:
            samples = [s for s in self.samples if (since is None or s.t >= since) and (until is None or s.t < until)]
        return Summary(
            total=len(samples),
            failed=sum(1 for s in samples if s.status is None),
            http_errors=sum(1 for s in samples if s.status is not None and s.status >= 500),
            by_version=dict(Counter(s.version for s in samples if s.version)),
            by_status=dict(Counter(str(s.status) for s in samples)),
            errors=dict(Counter(s.error for s in samples if s.error)),
            seconds=(until or self._ended or time.time()) - (since or self._started),
        )

    def __enter__(self) -> "LoadGenerator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
