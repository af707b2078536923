"""approve: a person's go for a version that passed the required environment, where the catalog
says `approval: manual`. The promotion sensor turns a successful approval into the release."""


from dagster import AssetObservation, Config, Failure, MetadataValue, op
from pydantic import Field

from deploy_pipelines.steps.common import VERSION_TAG, DeployTarget, history_key, parse_version, passed_in


class ApproveConfig(Config):
    version: str = Field(description="The version (tag) to release, e.g. v1.2.0; it must have passed the "
                                     "required environment")
    note: str = Field("", description="Why / ticket: recorded in the history")


@op(tags={"deploy/step": "approve"})
def approve(context, config: ApproveConfig, target: DeployTarget) -> None:
    """Check that the version passed the required environment and record the approval."""
    try:
        parse_version(config.version, target.spec)
    except ValueError as exc:
        raise Failure(f"{target.where}: {exc}") from None
    required = target.env.requires
    if required and not passed_in(context.instance, target.service, required, config.version):
        raise Failure(f"{target.where}: {config.version} has not passed {required}: nothing to approve")
    context.instance.add_run_tags(context.run_id, {VERSION_TAG: config.version})
    who = context.dagster_run.tags.get("dagster/user", "") or context.dagster_run.tags.get("user", "")
    context.log_event(AssetObservation(history_key(target.service, target.environment), metadata={
        "outcome": "approved", "version": config.version, "note": config.note,
        "approved_by": who or "(not recorded)",
        "summary": MetadataValue.md(f"**{config.version}** approved for {target.environment}"
                                    + (f": {config.note}" if config.note else "")),
    }))
    context.log.info(f"{config.version} approved for {target.environment}; the promotion sensor launches it")
