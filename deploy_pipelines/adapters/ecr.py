"""Amazon ECR (dagster-aws has no private-ECR resource): repositories created with immutable tags
and scan on push, the push credentials from GetAuthorizationToken (handed to the image tool on
stdin, never argv or logs), the digest a deploy uses from DescribeImages, and ECR's scan findings
(basic `findings` and Inspector's `enhancedFindings`) as the scan gate's Findings."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from deploy_pipelines.scanning.findings import Finding, normalise


class EcrError(RuntimeError):
    pass


@dataclass(frozen=True)
class EcrLogin:
    registry: str            # host of the registry, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com
    username: str            # always AWS
    password: str            # a 12-hour token: a secret, never logged (repr hides it)

    def __repr__(self) -> str:
        return f"EcrLogin(registry={self.registry!r}, username={self.username!r}, password=***)"


def _attrs(finding: dict) -> dict[str, str]:
    return {a["key"]: a.get("value", "") for a in finding.get("attributes", [])}


def findings_from_scan(scan: dict, image: str) -> list[Finding]:
    """DescribeImageScanFindings' imageScanFindings -> Findings (tool ecr / ecr-inspector)."""
    out = []
    for f in scan.get("findings", []):
        a = _attrs(f)
        out.append(Finding(id=f["name"], severity=normalise(f.get("severity")), tool="ecr",
                           target=a.get("package_name", image), installed=a.get("package_version", ""),
                           title=(f.get("description") or f.get("uri") or "")[:200]))
    for f in scan.get("enhancedFindings", []):
        vuln = f.get("packageVulnerabilityDetails", {})
        packages = vuln.get("vulnerablePackages") or [{}]
        for p in packages:
            out.append(Finding(id=vuln.get("vulnerabilityId") or f.get("title", "unknown"),
                               severity=normalise(f.get("severity")), tool="ecr-inspector",
                               target=p.get("name", image), installed=p.get("version", ""),
                               fixed_in=p.get("fixedInVersion", ""), title=(f.get("title") or "")[:200],
                               advice=(f.get("remediation", {}).get("recommendation", {}).get("text") or "")[:200]))
    return out


class EcrRegistry(ConfigurableResource):
    """One account's private ECR in one region."""

    region_name: str | None = None
    endpoint_url: str | None = None
    profile_name: str | None = None
    _client_cache: Any = PrivateAttr(default=None)

    def _client(self):
        if self._client_cache is None:
            import boto3

            self._client_cache = boto3.session.Session(profile_name=self.profile_name).client(
                "ecr", region_name=self.region_name, endpoint_url=self.endpoint_url)
        return self._client_cache

    def ensure_repository(self, name: str) -> str:
        """The repository, created if missing, with immutable tags and scan on push; returns its URI.
        An existing repository with mutable tags is switched to immutable (a tag must name one build)."""
        client = self._client()
        try:
            repo = client.describe_repositories(repositoryNames=[name])["repositories"][0]
        except client.exceptions.RepositoryNotFoundException:
            repo = client.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE",
                                            imageScanningConfiguration={"scanOnPush": True})["repository"]
        if not repo.get("imageTagMutability", "").startswith("IMMUTABLE"):
            client.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
        return repo["repositoryUri"]

    def login(self) -> EcrLogin:
        data = self._client().get_authorization_token()["authorizationData"][0]
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        return EcrLogin(registry=data["proxyEndpoint"].removeprefix("https://").removeprefix("http://"),
                        username=username, password=password)

    def digest(self, repository: str, tag: str) -> str:
        """The immutable digest behind repository:tag (what the deploy pins)."""
        client = self._client()
        try:
            images = client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
        except (client.exceptions.ImageNotFoundException, client.exceptions.RepositoryNotFoundException):
            raise EcrError(f"ECR has no image {repository}:{tag}: was it pushed?") from None
        return images[0]["imageDigest"]

    def scan_findings(self, repository: str, digest: str) -> list[Finding] | None:
        """The image's findings; None when ECR holds no completed scan of it (scanning is off, or
        still running: the scan gate then relies on its own scanners)."""
        client = self._client()
        try:
            pages = client.get_paginator("describe_image_scan_findings").paginate(
                repositoryName=repository, imageId={"imageDigest": digest})
            findings: list[Finding] = []
            for page in pages:
                if page.get("imageScanStatus", {}).get("status") != "COMPLETE":
                    return None
                findings += findings_from_scan(page.get("imageScanFindings", {}), f"{repository}@{digest}")
            return findings
        except client.exceptions.ScanNotFoundException:
            return None
