"""ECR against the moto server: repositories come with immutable tags (a second push of a tag is
refused) and scan on push, a mutable one is switched; the push login decodes the authorization
token and never shows the password; the digest comes from DescribeImages; scan findings (basic and
Inspector's enhanced) become the scan gate's Findings, and an image without a scan gives None.
Not covered: pushing layers (moto has no registry v2 endpoint), the build/scan ops' wiring."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from deploy_pipelines.adapters.ecr import EcrError, EcrRegistry
from deploy_pipelines_tests.fixtures_aws import aws_env, moto_server  # noqa: F401

pytestmark = pytest.mark.aws

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                                  "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()}, "layers": []})


def sha(manifest: str) -> str:
    return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()


def test_repository_is_immutable_and_the_digest_comes_from_describe_images(aws_env):  # noqa: F811
    ecr = EcrRegistry()
    uri = ecr.ensure_repository("morrow/api")
    client = ecr._client()
    repo = client.describe_repositories(repositoryNames=["morrow/api"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"]["scanOnPush"]
    assert uri.endswith("/morrow/api")
    pushed = client.put_image(repositoryName="morrow/api", imageManifest=MANIFEST, imageTag="v1.2.0",
                              imageDigest=sha(MANIFEST))["image"]
    assert ecr.digest("morrow/api", "v1.2.0") == pushed["imageId"]["imageDigest"] == sha(MANIFEST)
    other = MANIFEST.replace('"layers": []', '"layers": [], "annotations": {"x": "y"}')
    # AWS answers ImageTagAlreadyExistsException; moto 5.2.5 names it ImageAlreadyExistsException.
    with pytest.raises((client.exceptions.ImageTagAlreadyExistsException, client.exceptions.ImageAlreadyExistsException)):
        client.put_image(repositoryName="morrow/api", imageManifest=other, imageTag="v1.2.0", imageDigest=sha(other))
    assert ecr.digest("morrow/api", "v1.2.0") == sha(MANIFEST)              # the tag still names the first build
    with pytest.raises(EcrError, match="no image morrow/api:v9.9.9"):
        ecr.digest("morrow/api", "v9.9.9")
    client.create_repository(repositoryName="morrow/legacy", imageTagMutability="MUTABLE")
    for manifest in (MANIFEST, other):       # a mutable repository lets a tag move: the refusal above is immutability
        client.put_image(repositoryName="morrow/legacy", imageManifest=manifest, imageTag="v1", imageDigest=sha(manifest))
    assert ecr.digest("morrow/legacy", "v1") == sha(other)
    ecr.ensure_repository("morrow/legacy")
    assert client.describe_repositories(repositoryNames=["morrow/legacy"])["repositories"][0][
        "imageTagMutability"] == "IMMUTABLE"


def test_login_decodes_the_token_and_hides_the_password(aws_env):  # noqa: F811
    login = EcrRegistry().login()
    assert login.username == "AWS" and login.password and "://" not in login.registry
    assert login.password not in repr(login) and "***" in repr(login)


def test_scan_findings_join_the_findings_table(aws_env, moto_server):  # noqa: F811
    ecr = EcrRegistry()
    ecr.ensure_repository("morrow/scan")
    client = ecr._client()
    digest = client.put_image(repositoryName="morrow/scan", imageManifest=MANIFEST, imageTag="v1.0.0",
                              imageDigest=sha(MANIFEST))["image"]["imageId"]["imageDigest"]
    assert ecr.scan_findings("morrow/scan", digest) is None                 # never scanned
    result = {"registryId": "123456789012", "repositoryName": "morrow/scan", "imageId": {"imageDigest": digest},
              "imageScanStatus": {"status": "COMPLETE", "description": "done"},
              "imageScanFindings": {
                  "findings": [{"name": "CVE-2026-0001", "severity": "CRITICAL", "description": "openssl overflow",
                                "attributes": [{"key": "package_name", "value": "openssl"},
                                               {"key": "package_version", "value": "3.0.1"}]}],
                  "enhancedFindings": [{"severity": "MEDIUM", "title": "CVE-2026-0002 - golang.org/x/net",
                                        "packageVulnerabilityDetails": {
                                            "vulnerabilityId": "CVE-2026-0002",
                                            "vulnerablePackages": [{"name": "golang.org/x/net", "version": "0.1.0",
                                                                    "fixedInVersion": "0.2.0"}]}}]}}
    httpx.post(f"{moto_server.url}/moto-api/static/ecr/scan-finding-results",
               json={"results": [result], "region": "us-east-1"}).raise_for_status()
    client.start_image_scan(repositoryName="morrow/scan", imageId={"imageDigest": digest})
    findings = ecr.scan_findings("morrow/scan", digest)
    assert [(f.id, f.severity, f.tool, f.target, f.installed, f.fixed_in) for f in findings] == [
        ("CVE-2026-0001", "critical", "ecr", "openssl", "3.0.1", ""),
        ("CVE-2026-0002", "medium", "ecr-inspector", "golang.org/x/net", "0.1.0", "0.2.0")]
