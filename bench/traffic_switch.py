"""Traffic-change latency of the Docker platform, measured from the users' side (issue 8, point 5).

On a local stack of its own (temp folder, free ports), one blue-green target: 2 stable instances of
the sample service's v1.0.0 and 2 new ones of v1.1.0 beside them. Each round makes three decisions
and times each one from the call to the platform to nginx serving the new split:

    set_weight(100)  -> every answer from v1.1.0
    set_weight(0)    -> every answer from v1.0.0
    abort (at 100%)  -> every answer from v1.0.0   (then v1.1.0 is deployed again, not timed)

A poller thread sends a request on a fresh connection every few ms to the public URL and records
when each was sent and which version answered (X-App-Version). "Serving the new split" is the
first moment after which every answer comes from the intended version: the send time of the first
intended answer after the last unintended one (an upper bound, by one poll interval). Failed
requests (no HTTP answer, or 5xx) of the poller and of the load count against the goal.

Each round is run twice: without load, and with an 8-thread loopback load (LoadGenerator,
concurrency=8, fresh connections) on the same public URL. Inside every decision the platform's
own steps are timed (listing containers, reading the state, put_archive, SIGHUP, waiting for the
generation confirmation, Prometheus targets), so the report says where the time goes.

Run (from the repository root):
    .venv/bin/python -m bench.traffic_switch [--rounds 10] [--out bench/results/traffic_switch.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
POLL_INTERVAL = 0.005
SETTLE = 0.5          # seconds of all-intended answers after each call returns, before the next decision

# platform step -> seconds spent in it during the current decision (filled by TimedPlatform)
STEPS: dict[str, float] = defaultdict(float)


def timed_platform_class():
    """DockerNginxPlatform with its internal steps timed; behaviour unchanged."""
    from deploy_pipelines.adapters.docker_platform import DockerNginxPlatform

    def clocked(name, fn, *a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            STEPS[name] += time.perf_counter() - t

    class TimedProxy:
        """The nginx container, with the two calls that carry a config change timed."""

        def __init__(self, proxy):
            self._proxy = proxy

        def put_archive(self, *a, **kw):
            return clocked("put_archive", self._proxy.put_archive, *a, **kw)

        def kill(self, *a, **kw):
            return clocked("sighup", self._proxy.kill, *a, **kw)

        def __getattr__(self, name):
            return getattr(self._proxy, name)

    class TimedPlatform(DockerNginxPlatform):
        def _instances(self, *a, **kw):
            return clocked("list_containers", super()._instances, *a, **kw)

        def _state(self):
            return clocked("read_state (get_archive)", super()._state)

        def _proxy(self):
            proxy = clocked("find_proxy", super()._proxy)
            return TimedProxy(proxy) if proxy is not None else None

        def _confirm(self, proxy, state):
            return clocked("confirm_generation", super()._confirm, proxy, state)

        def _write_targets(self, *a, **kw):
            return clocked("prometheus_targets", super()._write_targets, *a, **kw)

        def _stop(self, *a, **kw):
            return clocked("stop_instances (after the switch)", super()._stop, *a, **kw)

    return TimedPlatform


class Poller:
    """One thread, one request at a time on a fresh connection, POLL_INTERVAL apart."""

    def __init__(self, url: str):
        self.url = url
        self.samples: list[tuple[float, str | None, int | None]] = []   # (sent, version, status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0),
                          headers={"Connection": "close"}) as client:
            while not self._stop.is_set():
                t = time.time()
                try:
                    r = client.get(self.url)
                    self.samples.append((t, r.headers.get("x-app-version"), r.status_code))
                except httpx.HTTPError:
                    self.samples.append((t, None, None))
                time.sleep(POLL_INTERVAL)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def switch_latency(samples, t0: float, t1: float, intended: str) -> float | None:
    """Seconds from t0 to the first intended answer after the last unintended one in [t0, t1)."""
    window = [s for s in samples if t0 <= s[0] < t1]
    last_bad = max((i for i, s in enumerate(window) if s[1] != intended or s[2] != 200), default=-1)
    after = window[last_bad + 1:]
    return after[0][0] - t0 if after else None


def decide(poller: Poller, name: str, intended: str, call) -> dict:
    STEPS.clear()
    t0 = time.time()
    call()
    returned = time.time() - t0
    steps = {k: round(v, 4) for k, v in STEPS.items()}
    time.sleep(SETTLE)
    t1 = time.time()
    latency = switch_latency(poller.samples, t0, t1, intended)
    window = [s for s in poller.samples if t0 <= s[0] < t1]
    return {"decision": name, "to_new_split_s": None if latency is None else round(latency, 4),
            "call_returned_s": round(returned, 4), "poller_requests": len(window),
            "poller_failed": sum(1 for s in window if s[2] is None or s[2] >= 500), "steps_s": steps}


def stats(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {}
    p95 = values[min(len(values) - 1, max(0, round(0.95 * len(values)) - 1))]
    return {"n": len(values), "median": round(statistics.median(values), 3), "p95": round(p95, 3),
            "max": round(values[-1], 3), "min": round(values[0], 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from deploy_pipelines.adapters.buildah import BuildahBuilder
    from deploy_pipelines.adapters.records import Probe, Workload
    from deploy_pipelines.catalog.models import BlueGreen, Rolling
    from deploy_pipelines.loadgen import LoadGenerator
    from deploy_pipelines.stack.local import LocalStack
    from deploy_pipelines.stack.process import free_port

    # SIGTERM (a CI timeout, kill PID) unwinds through `finally`: the stack stops by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="bench-traffic-"))
    stack = LocalStack(tmp / "stack")
    results: dict = {"rounds": args.rounds, "poll_interval_s": POLL_INTERVAL, "no_load": [], "load_8_threads": []}
    quiet = lambda *_: None  # noqa: E731
    try:
        env = stack.up(log=quiet)
        images = {}
        for version in ("v1.0.0", "v1.1.0"):
            src = tmp / f"src-{version}"
            shutil.copytree(REPO_ROOT / "examples" / "sample-service", src,
                            ignore=shutil.ignore_patterns("__pycache__"))
            (src / "release.py").write_text(f'VERSION = "{version}"\nFAULT_RATE = 0.0\nEXTRA: dict = {{}}\n')
            built = BuildahBuilder().build_and_push(src, "Containerfile", f"{env['DEPLOY_REGISTRY']}/bench/sample",
                                                    version, {"BASE_IMAGE": env["DEPLOY_BASE_IMAGE"]}, {})
            images[version] = Workload(version=version, image=built.ref, digest=built.digest, commit="bench",
                                       run_id=f"bench-{version}", replicas=2, env={},
                                       readiness=Probe(path="/ready", timeout=60))
        platform = timed_platform_class()(
            service="tsw", environment="bench", public_port=free_port(), docker_host=env["DEPLOY_DOCKER_HOST"],
            nginx_image=env["DEPLOY_NGINX_IMAGE"], prometheus_targets_dir=env["DEPLOY_PROMETHEUS_TARGETS"])
        url = platform.public_url() + "/ready"
        platform.deploy(images["v1.0.0"], Rolling(), quiet)
        platform.promote(quiet)
        platform.deploy(images["v1.1.0"], BlueGreen(), quiet)

        for mode in ("no_load", "load_8_threads"):
            load = LoadGenerator(url, concurrency=8).start() if mode == "load_8_threads" else None
            try:
                with Poller(url) as poller:
                    time.sleep(1)
                    for i in range(args.rounds):
                        round_ = [decide(poller, "set_weight(100)", "v1.1.0", lambda: platform.set_weight(100, quiet)),
                                  decide(poller, "set_weight(0)", "v1.0.0", lambda: platform.set_weight(0, quiet))]
                        platform.set_weight(100, quiet)
                        time.sleep(SETTLE)
                        round_.append(decide(poller, "abort", "v1.0.0", lambda: platform.abort("bench", quiet)))
                        results[mode].append(round_)
                        print(mode, i + 1, [(d["decision"], d["to_new_split_s"], d["call_returned_s"]) for d in round_],
                              flush=True)
                        platform.deploy(images["v1.1.0"], BlueGreen(), quiet)   # green again, not timed
                        time.sleep(SETTLE)
            finally:
                if load is not None:
                    summary = load.stop()
                    results[f"{mode}_load_summary"] = {"requests": summary.total, "failed": summary.failed,
                                                       "http_5xx": summary.http_errors,
                                                       "rps": round(summary.rps, 1)}
    finally:
        stack.down(log=quiet)
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {}
    for mode in ("no_load", "load_8_threads"):
        decisions = [d for r in results[mode] for d in r]
        missing = sum(1 for d in decisions if d["to_new_split_s"] is None)
        per_step = defaultdict(list)
        for d in decisions:
            for k, v in d["steps_s"].items():
                per_step[k].append(v)
        summary[mode] = {
            "all_decisions": stats([d["to_new_split_s"] for d in decisions if d["to_new_split_s"] is not None]),
            **{name: stats([d["to_new_split_s"] for d in decisions if d["decision"] == name
                            and d["to_new_split_s"] is not None]) for name in ("set_weight(100)", "set_weight(0)", "abort")},
            "never_settled": missing,
            "call_returned_s": stats([d["call_returned_s"] for d in decisions]),
            "poller_failed": sum(d["poller_failed"] for d in decisions),
            "median_step_s": {k: round(statistics.median(v), 4) for k, v in sorted(per_step.items())},
        }
    summary["load_failed_or_5xx"] = (results.get("load_8_threads_load_summary", {}).get("failed", 0)
                                     + results.get("load_8_threads_load_summary", {}).get("http_5xx", 0))
    results["summary"] = summary
    text = json.dumps(results, indent=2)
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
