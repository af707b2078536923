"""build: build the service at the release commit and push it; the deploy uses the digest."""


import tempfile
from pathlib import Path

import httpx
from dagster import Failure, MetadataValue, Out, Output, op

from deploy_pipelines.adapters.git import GitSource
from deploy_pipelines.adapters.images import ImageBuilder, ImageBuildError
from deploy_pipelines.adapters.records import BuiltImage
from deploy_pipelines.redact import is_secret_name, redact
from deploy_pipelines.steps.common import DeployTarget, ReleaseInput, resolve_setting


def image_repository(target: DeployTarget) -> str:
    svc = target.spec
    registry = resolve_setting(svc.image.registry or target.env.registry,
                               f"services.{target.service}.image.registry")
    return f"{registry}/{svc.image.repository}"


def build_image(context, target: DeployTarget, release: ReleaseInput, git: GitSource, builder: ImageBuilder,
                tag: str, refresh_base: bool = False, labels: dict[str, str] | None = None) -> BuiltImage:
    """Export the release commit, build it with the catalog's build args and push repository:tag."""
    svc = target.spec
    resolved = {k: resolve_setting(v, f"services.{target.service}.image.build_args.{k}")
                for k, v in svc.image.build_args.items()}
    secrets = {k: v for k, v in resolved.items() if is_secret_name(k)}
    args = {k: v for k, v in resolved.items() if k not in secrets}
    labels = {"org.opencontainers.image.version": release.version,
              "org.opencontainers.image.revision": release.commit,
              "org.opencontainers.image.title": target.service, **(labels or {})}
    with tempfile.TemporaryDirectory(prefix="deploy-build-") as tmp:
        tree = git.export(release.commit, Path(tmp) / "src")
        try:
            return builder.build_and_push(tree / svc.image.context, svc.image.file, image_repository(target), tag,
                                          args, labels, log=context.log.info, refresh_base=refresh_base,
                                          secrets=secrets)
        except ImageBuildError as exc:
            raise Failure(f"{target.where}: build of {release.version} failed: "
                          f"{redact(exc, *secrets.values())}") from None


@op(out=Out(BuiltImage), tags={"deploy/step": "build"})
def build(context, release: ReleaseInput, target: DeployTarget, git: GitSource, builder: ImageBuilder) -> Output:
    """Build at the tag and push (or, for external images, verify the tag exists)."""
    svc = target.spec
    repository = image_repository(target)
    try:
        existing = builder.find(repository, release.version)
    except (httpx.HTTPError, OSError) as exc:      # a registry that is down: stop before anything is deployed
        raise Failure(f"{target.where}: registry {repository.split('/', 1)[0]} unreachable, nothing deployed: "
                      f"{redact(exc)}") from None
    if svc.image.external:
        if existing is None:
            raise Failure(f"{target.where}: image {repository}:{release.version} does not exist "
                          "(image.external: the image is built elsewhere; push it first)")
        image = BuiltImage(repository, release.version, existing, release.commit)
        context.log.info(f"using the externally built {repository}:{release.version} = {existing}")
    else:
        image = build_image(context, target, release, git, builder, release.version)
        context.log.info(f"pushed {repository}:{release.version} as {image.digest}")
    return Output(image, metadata={
        "image": image.ref,
        "digest": image.digest,
        "registry_url": MetadataValue.url(f"http://{repository.split('/', 1)[0]}/v2/"
                                          f"{repository.split('/', 1)[1]}/manifests/{image.digest}"),
    })
