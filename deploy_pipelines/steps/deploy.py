"""deploy: start the new version per strategy (rolling / blue-green / canary first step)."""


from dagster import Failure, MetadataValue, Out, Output, op

from deploy_pipelines.adapters.database import Database
from deploy_pipelines.adapters.platform import DeploySpec, Platform, PlatformError
from deploy_pipelines.adapters.records import BuiltImage, DeployResult
from deploy_pipelines.catalog.models import BlueGreen, Canary, Rolling
from deploy_pipelines.steps.common import DeployTarget, ReleaseInput, resolve_setting


def deploy_spec(target: DeployTarget, version: str, image: str, digest: str, run_id: str,
                database: Database | None) -> DeploySpec:
    t = target.target
    strategy = t.strategy
    env = {k: resolve_setting(v, f"services.{target.service}.targets.{target.environment}.env.{k}")
           for k, v in t.env.items()}
    if target.spec.database is not None and t.database_env and database is not None:
        env[t.database_env] = database.url
    env.setdefault("APP_VERSION", version)
    health = target.spec.verify.health
    return DeploySpec(
        service=target.service, environment=target.environment, version=version, image=image, digest=digest,
        run_id=run_id, replicas=t.replicas,
        strategy=strategy.kind,
        max_surge=strategy.max_surge if isinstance(strategy, Rolling) else 1,
        max_unavailable=strategy.max_unavailable if isinstance(strategy, Rolling) else 0,
        port=int(resolve_setting(t.port, f"services.{target.service}.targets.{target.environment}.port")),
        health_path=health.path, health_timeout=health.timeout,
        health_interval=min(health.interval, 1.0), env=env,
    )


@op(out=Out(DeployResult), tags={"deploy/step": "deploy"})
def deploy(context, release: ReleaseInput, image: BuiltImage, migrations: list, target: DeployTarget,
           platform: Platform, database: Database) -> Output:
    """Start the new version; traffic stays on stable except for rolling, which moves it instance by instance."""
    spec = deploy_spec(target, release.version, image.ref, image.digest, release.run_id, database)
    stable = platform.current(target.service, target.environment)
    context.log.info(f"deploying {release.version} ({image.digest[:19]}) by {spec.strategy}, "
                     f"{spec.replicas} replica(s); stable: {stable.version if stable else 'nothing yet'}")
    try:
        result = platform.deploy(spec, log=context.log.info)
    except PlatformError as exc:
        context.log.error(f"deploy failed: {exc}; aborting so traffic stays on stable")
        platform.abort(target.service, target.environment, str(exc), log=context.log.info)
        raise Failure(f"{target.where}: deploy of {release.version} failed and was aborted: {exc}") from None
    return Output(result, metadata={
        "strategy": spec.strategy,
        "stable_before": result.previous.version if result.previous else "none",
        "endpoints": MetadataValue.json(result.endpoints),
        "public_url": MetadataValue.url(result.public_url) if result.public_url else "",
    })
