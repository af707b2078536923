"""cleanup: remove the previous release kept warm (blue-green `keep_previous`) once its grace
period has passed. Launched by the cleanup_<service>_<env> sensor; a later release's promote
removes it too. Safe to re-execute: nothing expired, nothing removed."""


from dagster import AssetObservation, MetadataValue, Output, op

from deploy_pipelines.adapters.platform import Platform
from deploy_pipelines.steps.common import DeployTarget, ensure_exclusive, history_key


@op(tags={"deploy/step": "cleanup"})
def remove_expired_previous(context, target: DeployTarget, platform: Platform) -> Output:
    """Remove the previous release's instances whose keep_previous grace period has passed."""
    ensure_exclusive(context, target.key)
    removed = platform.cleanup(context.log.info)
    if not removed:
        context.log.info(f"{target.where}: nothing kept warm past its grace period")
    else:
        context.log_event(AssetObservation(history_key(target.service, target.environment), metadata={
            "outcome": "previous_removed", "removed": MetadataValue.json(removed), "instances_removed": len(removed)},
            description=f"keep_previous passed: {len(removed)} instance(s) of the previous release removed"))
    return Output(None, metadata={"removed": MetadataValue.json(removed)})
