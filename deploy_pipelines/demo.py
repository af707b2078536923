"""`make demo`: real releases of the sample service, end to end, on the local stack.

Brings the stack up, makes the sample service's git repository (tags v1.0.0 ... v1.4.0), and
releases through Dagster into the persistent $DAGSTER_HOME while a loopback load generator
plays the users. Prints one row per release and checks the outcome it promises.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CATALOG = REPO_ROOT / "examples" / "demo" / "deploy.yaml"
SAMPLE = REPO_ROOT / "examples" / "sample-service"

# (service, version, what the row shows)
PLAN = [
    ("app", "v1.0.0", "rolling, first release"),
    ("app", "v1.1.0", "rolling; migration adds a NULL-able column + backfill"),
    ("app", "v1.2.0", "rolling; answers 30% HTTP 500: must fail verify and roll back"),
    ("app", "v1.3.0", "unsafe migration (drops a column): must stop at the scan gate"),
    ("shop", "v1.1.0", "canary target, first release"),
    ("shop", "v1.4.0", "canary 25% -> 50% -> 100%"),
    ("shop", "v1.2.0", "canary of the faulty version: must abort at the first analysis"),
    ("web", "v1.1.0", "blue-green target, first release"),
    ("web", "v1.4.0", "blue-green switch, blue kept warm"),
]
EXPECTED = {("app", "v1.2.0"): "FAILURE", ("app", "v1.3.0"): "FAILURE", ("shop", "v1.2.0"): "FAILURE"}


@dataclass
class Row:
    service: str
    version: str
    strategy: str
    run_id: str
    status: str
    seconds: float
    failed_step: str = ""
    reason: str = ""
    serving_after: str = ""


def _failure_of(instance, run_id: str) -> tuple[str, str, str]:
    """(failed step, reason, version serving after) from the run's own event log."""
    from dagster import DagsterEventType

    step, reason, serving = "", "", ""
    for record in instance.all_logs(run_id, of_type={DagsterEventType.STEP_FAILURE,
                                                     DagsterEventType.ASSET_OBSERVATION}):
        event = record.dagster_event
        if event.event_type == DagsterEventType.STEP_FAILURE:
            step = event.step_key
            data = event.step_failure_data
            meta = (data.user_failure_data.metadata if data.user_failure_data else {}) or {}
            desc = data.user_failure_data.description if data.user_failure_data else None
            reason = str(getattr(meta.get("reason"), "value", "") or desc or data.error.message.split("\n")[0])
        elif event.event_type == DagsterEventType.ASSET_OBSERVATION:
            meta = event.asset_observation_data.asset_observation.metadata
            serving = str(getattr(meta.get("serving"), "value", ""))
    return step, reason, serving


def _serving(port: int, n: int = 40) -> dict[str, int]:
    import httpx

    seen: dict[str, int] = {}
    with httpx.Client(timeout=5) as client:
        for _ in range(n):
            try:
                v = client.get(f"http://127.0.0.1:{port}/health").headers.get("x-app-version", "?")
            except httpx.HTTPError:
                v = "unreachable"
            seen[v] = seen.get(v, 0) + 1
    return seen


def run_demo(stack_root: Path) -> int:
    from dagster import DagsterInstance, execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from deploy_pipelines.catalog import load_catalog
    from deploy_pipelines.demo_repo import create_demo_repo
    from deploy_pipelines.loadgen import LoadGenerator
    from deploy_pipelines.stack.local import LocalStack
    from deploy_pipelines.stack.process import free_port

    started = time.monotonic()
    print(f"== local stack ({stack_root})")
    stack = LocalStack(stack_root)
    env = stack.up()
    # The demo's own settings: its git repository, the public ports, one database per service.
    repo = stack.root / "demo-repo"
    if not (repo / ".git").exists() and not (repo / "HEAD").exists():
        tags = create_demo_repo(repo, SAMPLE)
        print(f"== demo repository {repo}: {', '.join(tags)}")
    from deploy_pipelines.stack.postgres import PostgresServer

    pg = PostgresServer.start(stack.root / "postgres")
    for db in ("demo_web", "demo_web_live"):
        pg.create_database(db)
    env.setdefault("DEMO_WEB_DATABASE_URL", pg.url("demo_web"))
    env.setdefault("DEMO_WEB_LIVE_DATABASE_URL", pg.url("demo_web_live"))
    env["DEMO_REPO"] = str(repo)
    for name in ("DEMO_APP_PORT", "DEMO_SHOP_PORT", "DEMO_WEB_PORT", "DEMO_WEB_LIVE_PORT"):
        previous = stack.env().get(name)
        env[name] = previous or str(free_port())
    stack.write_env(env)
    os.environ.update(env)
    os.environ["DEPLOY_CATALOG"] = str(CATALOG)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())

    catalog = load_catalog(CATALOG)
    instance = DagsterInstance.get()
    repo_def = ReconstructableRepository.for_module("deploy_pipelines.definitions", "defs",
                                                    working_directory=str(REPO_ROOT))
    # The users: a loopback load on each service from the start (requests before the first
    # release has anything to answer are not counted).
    loads = {s: LoadGenerator(f"http://127.0.0.1:{env[f'DEMO_{s.upper()}_PORT']}/api/items", concurrency=2).start()
             for s in ("app", "shop", "web")}
    first_ok: dict[str, float] = {}
    rows: list[Row] = []
    print(f"== releases through Dagster (DAGSTER_HOME={home})")
    try:
        for service, version, what in PLAN:
            job_name = f"release_{service}_demo"
            t0 = time.monotonic()
            result = execute_job(
                repo_def.get_reconstructable_job(job_name), instance=instance,
                run_config={"ops": {"scan": {"config": {"version": version}}},
                            # The table below tells the story; the op logs are in the UI.
                            "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
                tags={"deploy/target": f"{service}:demo", "deploy/version": version, "demo": "true"})
            seconds = time.monotonic() - t0
            status = "SUCCESS" if result.success else "FAILURE"
            step, reason, serving = ("", "", "") if result.success else _failure_of(instance, result.run_id)
            row = Row(service, version, catalog.services[service].targets["demo"].strategy.kind, result.run_id,
                      status, seconds, step, reason, serving)
            rows.append(row)
            print(f"   {service:<5} {version:<7} {row.strategy:<10} {status:<8} {seconds:5.1f}s  {what}"
                  + (f"\n         failed at {step}: {reason[:160]}" if step else ""))
            if result.success:
                first_ok.setdefault(service, time.time())
    finally:
        for lg in loads.values():
            lg.stop()
    _print_table(rows)
    return _check(rows, env, loads, first_ok, time.monotonic() - started)


def _print_table(rows: list[Row]) -> None:
    print("\n| service | version | strategy | run id | status | duration | failed step / rule | rollback |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rollback = f"rolled back, serving {r.serving_after}" if r.serving_after else ("-" if r.status == "SUCCESS"
                                                                                  else "nothing deployed")
        print(f"| {r.service} | {r.version} | {r.strategy} | {r.run_id[:8]} | {r.status} | {r.seconds:.1f}s | "
              f"{(r.failed_step + ': ' + r.reason[:90]) if r.failed_step else '-'} | {rollback} |")


def _check(rows: list[Row], env: dict[str, str], loads, first_ok: dict[str, float], total: float) -> int:
    """The demo's promises, checked against the real stack: exit non-zero if one does not hold."""
    import psycopg2

    problems = []
    for r in rows:
        want = EXPECTED.get((r.service, r.version), "SUCCESS")
        if r.status != want:
            problems.append(f"{r.service} {r.version}: {r.status}, expected {want}")
    app = _serving(int(env["DEMO_APP_PORT"]))
    print(f"\napp serves: {app}")
    if set(app) != {"v1.1.0"}:
        problems.append(f"app should serve only v1.1.0, serves {app}")
    with psycopg2.connect(env["DEMO_DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(sku) FROM items")
        total_rows, with_sku = cur.fetchone()
    print(f"app database: items has the v1.1.0 column sku, backfilled in {with_sku}/{total_rows} rows")
    if total_rows == 0 or with_sku != total_rows:
        problems.append(f"sku backfill incomplete: {with_sku}/{total_rows}")
    for name, key in (("shop", "DEMO_SHOP_PORT"), ("web", "DEMO_WEB_PORT")):
        seen = _serving(int(env[key]))
        print(f"{name} serves: {seen}")
        if set(seen) != {"v1.4.0"}:
            problems.append(f"{name} should serve only v1.4.0, serves {seen}")
    for name, lg in loads.items():
        s = lg.summary(since=first_ok.get(name, time.time()))
        print(f"users of {name} since its first release: {s.total} requests, {s.failed} without an answer, "
              f"{s.http_errors} HTTP 5xx, answered by {s.by_version}")
        if s.failed:
            problems.append(f"{s.failed} request(s) to {name} got no answer during its releases")
    print(f"\ndemo took {total:.0f}s. Open the UI over this history: make ui  (then http://127.0.0.1:3000)")
    if problems:
        print("DEMO CHECKS FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("demo checks: all hold")
    return 0
