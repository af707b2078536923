"""deploy: start the new version per strategy (rolling / blue-green / canary first step)."""


from dagster import Failure, MetadataValue, Out, Output, op

from deploy_pipelines.adapters.platform import Platform, PlatformError
from deploy_pipelines.adapters.records import BuiltImage, DeployResult, Probe, SecretEnv, Workload
from deploy_pipelines.catalog import EnvRef
from deploy_pipelines.steps.common import DeployTarget, ReleaseInput, ensure_exclusive, ensure_not_downgrade


def workload_for(target: DeployTarget, version: str, image: str, digest: str, commit: str, run_id: str) -> Workload:
    """The catalog's target as a Workload: plain settings as values, secrets as references only
    (the platform resolves them where the workload starts), the database URL always a reference."""
    t = target.target
    env: dict[str, str] = {}
    secret_env: list[SecretEnv] = []
    for name, value in t.env.items():
        if isinstance(value, EnvRef):
            secret_env.append(SecretEnv(name=name, env=value.env))
        else:
            env[name] = value
    db = target.spec.database
    if db is not None and t.database_env:
        secret_env.append(SecretEnv(name=t.database_env, env=(t.database_url or db.url).env))
    if t.platform == "kubernetes":
        # Pods get secrets as secretKeyRefs only (catalog rule: no {env:} values on Kubernetes).
        secret_env = [SecretEnv(name=n, secret=r.secret, key=r.key) for n, r in t.kubernetes.secrets.items()]
    health = target.spec.verify.health
    period = min(health.interval, 1.0)
    return Workload(
        version=version, image=image, digest=digest, commit=commit, run_id=run_id,
        container_port=t.container_port, replicas=t.replicas, env=env, secret_env=tuple(secret_env),
        resources=dict(t.kubernetes.resources),
        readiness=Probe(path=health.readiness or health.path, timeout=health.timeout, period=period),
        liveness=Probe(path=health.liveness, timeout=health.timeout, period=period) if health.liveness else None)


@op(out=Out(DeployResult), tags={"deploy/step": "deploy"})
def deploy(context, release: ReleaseInput, image: BuiltImage, migrations: list, target: DeployTarget,
           platform: Platform) -> Output:
    """Start the new version; traffic stays on stable except for rolling, which moves it instance by instance."""
    ensure_exclusive(context, target.key)
    workload = workload_for(target, release.version, image.ref, image.digest, release.commit, release.run_id)
    stable = platform.current()
    ensure_not_downgrade(target, stable.version if stable else None, release.version, release.allow_downgrade)
    strategy = target.target.strategy
    context.log.info(f"deploying {release.version} ({image.digest[:19]}) by {strategy.kind}, "
                     f"{workload.replicas} replica(s); stable: {stable.version if stable else 'nothing yet'}")
    try:
        result = platform.deploy(workload, strategy, log=context.log.info)
    except PlatformError as exc:
        context.log.error(f"deploy failed: {exc}; aborting so traffic stays on stable")
        platform.abort(str(exc), log=context.log.info)
        raise Failure(f"{target.where}: deploy of {release.version} failed and was aborted: {exc}") from None
    return Output(result, metadata={
        "strategy": strategy.kind,
        "stable_before": result.previous.version if result.previous else "none",
        "verification_url": MetadataValue.url(result.endpoints[0]) if result.endpoints else "",
        "public_url": MetadataValue.url(result.public_url) if result.public_url else "",
    })
